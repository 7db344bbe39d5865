// A subscription handle (PROTOCOL.md sections 7, 8 and 11): what subscribe() returns to the page. Several
// handles may share one subscription on the gateway (an Entry of the Subscriptions registry); the handle
// holds its own handlers and asks the registry (its owner) for everything that touches the gateway.
import { modelEvent } from "./names.js";
import { checkConditions } from "./filters.js";
import { TelegraphyError } from "./errors.js";

export class Subscription {
  constructor(owner, entry, handler, options) {
    this._owner = owner; // the Subscriptions unit
    this._entry = entry;
    this._handler = handler || null;
    this._actions = null;
    this._errorHandlers = options.onError ? [options.onError] : [];
    this._recoverHandlers = options.onRecover ? [options.onRecover] : [];
    this._presenceHandlers = { join: [], leave: [], presence_paused: [], presence_resumed: [] };
    this._closed = false;
  }

  get pattern() {
    return this._entry.pattern;
  }

  /** The subscription's name on the gateway: what its events carry in `sub`. */
  get name() {
    return this._entry.key;
  }

  /** The filters sent with it: {filter, exclude} (null when none). */
  get filters() {
    return { filter: this._entry.filter, exclude: this._entry.exclude };
  }

  /** {epoch, seq} the subscription would resume from after a reconnect, or null (no history). */
  get position() {
    const p = this._entry.position;
    return p && { epoch: p.epoch, seq: p.seq };
  }

  /**
   * True between `presence_paused` and `presence_resumed` (section 11: the channel has more members than
   * the gateway sends join/leave for). False again after a reconnect: the gateway pauses it again if needed.
   */
  get presencePaused() {
    return this._entry.paused;
  }

  /** pending (asked, not confirmed) | active | failed (refused by the gateway) | closed */
  get state() {
    return this._closed ? "closed" : this._entry.state;
  }

  onCreate(fn) {
    return this._onAction("created", fn);
  }

  onUpdate(fn) {
    return this._onAction("updated", fn);
  }

  onDelete(fn) {
    return this._onAction("deleted", fn);
  }

  onError(fn) {
    this._errorHandlers.push(fn);
    return this;
  }

  /**
   * fn({recovered, epoch, seq, sub, event}) after each re-subscription following a lost connection:
   * recovered false = events may have been missed, reload the data by other means.
   */
  onRecover(fn) {
    this._recoverHandlers.push(fn);
    return this;
  }

  /**
   * on("recovered", fn) = onRecover(fn); on("error", fn) = onError(fn); presence (section 11): "join"/"leave"
   * fn({client, user, info?}), "presence_paused"/"presence_resumed" fn({clients}).
   */
  on(type, fn) {
    if (type === "recovered") return this.onRecover(fn);
    if (type === "error") return this.onError(fn);
    if (Object.prototype.hasOwnProperty.call(this._presenceHandlers, type)) {
      if (typeof fn !== "function") throw new TypeError(`Telegraphy: on(${JSON.stringify(type)}) takes a function`);
      this._presenceHandlers[type].push(fn);
      return this;
    }
    throw new TypeError(`Telegraphy: a subscription has no ${JSON.stringify(type)} event (recovered, error, join, leave, presence_paused, presence_resumed)`);
  }

  /** Who is present on the channel now (section 11): resolves {clients: [{client, user, info?}], truncated}. */
  presence() {
    return this._ask("presence");
  }

  /** How many are present (counts only): resolves {clients, users}. */
  presenceStats() {
    return this._ask("presence_stats");
  }

  // A presence request, sent once the subscription is confirmed (the gateway answers only for a channel
  // the connection is present on); rejected on an `error` answer or when the connection drops first.
  _ask(type) {
    if (!this._entry.presence) {
      return Promise.reject(new TelegraphyError("bad_request", "subscribe with {presence: true} to ask for presence", { event: this.pattern }));
    }
    return this.ready().then(() => (this._closed ? Promise.reject(new TelegraphyError("closed", "subscription closed")) : this._owner._ask(this._entry, type)));
  }

  /** Narrow with more conditions (merged into the filter); re-sent to the gateway. */
  filter(conditions) {
    return this._narrow("filter", conditions);
  }

  /** Drop events for which all these conditions hold (merged into the exclude); re-sent to the gateway. */
  exclude(conditions) {
    return this._narrow("exclude", conditions);
  }

  /**
   * Replace both filter and exclude ({} or undefined clears them) and re-send the subscription in one
   * frame under its name (section 8: replace). Resolves once the gateway confirmed the new filters,
   * rejects if it refused them. Until then no event of this name reaches the handlers (they were
   * matched by the old filters), and the position starts over from the gateway's answer.
   */
  setFilters(filters) {
    if (filters === undefined || filters === null) filters = {};
    if (typeof filters !== "object" || Array.isArray(filters) || Object.keys(filters).some((k) => k !== "filter" && k !== "exclude")) {
      throw new TypeError("Telegraphy: setFilters takes {filter, exclude}");
    }
    const filter = checkConditions(filters.filter, "filter");
    const exclude = checkConditions(filters.exclude, "exclude");
    if (!this._closed) this._owner._respec(this, { filter: filter && { ...filter }, exclude: exclude && { ...exclude } });
    return this.ready();
  }

  /** Resolves once the gateway confirmed the subscription; rejects if it refused it. */
  ready() {
    if (this._closed) return Promise.reject(new TelegraphyError("closed", "subscription closed"));
    if (this._entry.state === "active") return Promise.resolve();
    if (this._entry.state === "failed") return Promise.reject(this._entry.error);
    return new Promise((resolve, reject) => this._entry.waiters.push({ sub: this, resolve, reject }));
  }

  /** Stops delivery at once; resolves when the gateway confirmed (or at once when offline). */
  unsubscribe() {
    if (this._closed) return Promise.resolve();
    this._closed = true;
    for (const w of this._takeWaiters()) w.reject(new TelegraphyError("closed", "subscription closed"));
    return this._owner._release(this);
  }

  _takeWaiters() {
    const mine = this._entry.waiters.filter((w) => w.sub === this);
    this._entry.waiters = this._entry.waiters.filter((w) => w.sub !== this);
    return mine;
  }

  _narrow(kind, conditions) {
    const more = checkConditions(conditions, kind);
    if (this._closed || !more) return this;
    const entry = this._entry;
    const spec = { filter: entry.filter, exclude: entry.exclude };
    spec[kind] = { ...entry[kind], ...more };
    this._owner._respec(this, spec);
    return this;
  }

  _onAction(action, fn) {
    if (!this._actions) this._actions = {};
    (this._actions[action] ||= []).push(fn);
    return this;
  }

  _deliver(frame) {
    if (this._closed) return;
    const event = { name: frame.name, data: frame.data, sub: frame.sub ?? this._entry.key };
    if (frame.from) event.from = frame.from; // a client publish's sender (section 13.1)
    if (this._handler) this._owner._call(this._handler, event);
    if (!this._actions) return;
    const model = modelEvent(frame.name);
    const fns = model && this._actions[model.action];
    if (fns) for (const fn of fns) this._owner._call(fn, { ...event, ...model });
  }

  _fail(error) {
    for (const fn of this._errorHandlers) this._owner._call(fn, error);
  }

  // A presence frame of this subscription's name: type is its `type`, arg what each handler gets a copy of.
  _presence(type, arg) {
    if (this._closed) return;
    for (const fn of this._presenceHandlers[type]) this._owner._call(fn, { ...arg });
  }

  _recovered(info) {
    if (this._closed) return;
    for (const fn of this._recoverHandlers) this._owner._call(fn, { ...info });
  }
}

