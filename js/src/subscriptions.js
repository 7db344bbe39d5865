// The page's subscriptions on the gateway (PROTOCOL.md sections 7, 8 and 11): the entries (one per
// subscription name), the handles that share them, the requests waiting for an answer, event routing and
// each subscription's stream position.
import { validateName, validatePattern, validateSubName, matches } from "./names.js";
import { checkConditions, checkSize, canonical } from "./filters.js";
import { TelegraphyError } from "./errors.js";
import { Subscription } from "./subscription.js";

/**
 * One subscription held on the gateway: a name (section 8; by default the pattern) with its pattern
 * and filters, the page's Subscription handles that share it, and its stream position (section 7).
 */
class Entry {
  constructor(key, pattern, spec, explicit, presence) {
    this.key = key; // the name: what event frames carry in `sub`
    this.pattern = pattern;
    this.presence = presence; // present on the channel (section 11): `"presence": true` in every subscribe
    this.filter = spec.filter;
    this.exclude = spec.exclude;
    this.explicit = explicit; // named by the app
    this.subs = new Set();
    this.state = "pending"; // pending | active | failed
    this.error = null;
    this.reqId = null; // the subscribe request whose answer counts
    this.queued = false; // a subscribe frame is due (sent in a microtask: a chain sends one frame)
    this.sent = false; // subscribed (or asked) on the current socket
    this.confirmed = false; // `subscribed` received on the current socket
    this.recovering = false; // it was live when the connection was lost: the next answer tells the app
    this.paused = false; // presence_paused received on the current socket and no presence_resumed since
    this.replaced = false; // filters changed since the gateway last confirmed them: its frames are stale
    this.retries = 0;
    this.retryTimer = null;
    this.waiters = [];
    this.position = null; // {epoch, seq}: where the next `since` resumes from
    this.last = null; // {epoch, seq} of the last event delivered: an event not above it is a duplicate
  }

  /** Canonical text of the filters, to compare subscriptions. */
  get spec() {
    return canonical({ filter: this.filter, exclude: this.exclude });
  }

  /** Frames name it with `sub` (and then expect the gateway to echo it) unless it is a plain pattern. */
  get named() {
    return this.explicit || this.key !== this.pattern || this.filter !== null || this.exclude !== null;
  }

  settle(error) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) (error ? w.reject : w.resolve)(error || undefined);
  }
}

const sameEpoch = (a, b) => a !== null && b !== null && a.epoch === b.epoch;

function checkSince(since) {
  if (
    !since ||
    typeof since.epoch !== "string" ||
    since.epoch.length === 0 ||
    since.epoch.length > 64 ||
    !Number.isSafeInteger(since.seq) ||
    since.seq < 0
  ) {
    throw new TypeError('Telegraphy: since must be {"epoch": string, "seq": integer >= 0} (a subscription\'s position)');
  }
  return { epoch: since.epoch, seq: since.seq };
}

/**
 * The page's subscriptions on the gateway (sections 7 and 8): the entries by name, the requests
 * waiting for an answer, the frames that subscribe and unsubscribe, event routing and each
 * subscription's stream position. It knows nothing of sockets: `host` gives it send(frame) (false when
 * nothing can be sent), live() (`connected` received on the current connection), id(), emit(type,
 * info), error(err), call(fn, arg), setTimeout/clearTimeout and retryDelay(attempt).
 */
export class Subscriptions {
  constructor(host) {
    this._host = host;
    this._entries = new Map(); // name -> Entry
    this._pending = new Map(); // request id -> what its answer settles
    this._names = 0;
    this._flushQueued = false;
    this._candidates = []; // positions to adopt once everything before them has arrived (_barrier)
  }

  /** Telegraphy.subscribe: see there. */
  subscribe(pattern, handler, options) {
    if (handler && typeof handler === "object") [handler, options] = [undefined, handler];
    options = options || {};
    if (!validatePattern(pattern)) throw new TypeError(`Telegraphy: invalid pattern ${JSON.stringify(pattern)}`);
    if (handler != null && typeof handler !== "function") throw new TypeError("Telegraphy: handler must be a function");
    const spec = { filter: checkConditions(options.filter, "filter"), exclude: checkConditions(options.exclude, "exclude") };
    checkSize(spec);
    const since = options.since == null ? null : checkSince(options.since);
    if (options.presence !== undefined && typeof options.presence !== "boolean") throw new TypeError("Telegraphy: presence must be a boolean");
    const presence = options.presence === true;
    if (presence && !validateName(pattern)) throw new TypeError(`Telegraphy: presence needs a channel without wildcards, not ${JSON.stringify(pattern)}`);
    const name = options.name;
    let entry;
    if (name !== undefined) {
      if (!validateSubName(name)) throw new TypeError(`Telegraphy: invalid subscription name ${JSON.stringify(name)}`);
      entry = this._entries.get(name);
      if (entry && (entry.pattern !== pattern || entry.spec !== canonical(spec) || entry.presence !== presence)) {
        throw new TypeError(`Telegraphy: subscription name ${JSON.stringify(name)} is in use with another pattern, filter or presence`);
      }
      entry ||= this._add(name, pattern, spec, true, presence);
    } else {
      entry = this._find(pattern, canonical(spec), presence) || this._add(this._freeName(pattern, spec, presence), pattern, spec, false, presence);
    }
    if (since && !entry.position) entry.position = since;
    const sub = new Subscription(this, entry, handler, options);
    entry.subs.add(sub);
    return sub;
  }

  /**
   * Subscribe frames to open a connection with (SSE sends them with the connect, section 10.1): as
   * many as fit in `maxChars` (each frame's `size`: by default its JSON's length), at most `maxCount`.
   * The others follow `connected`.
   */
  openingFrames(maxChars, maxCount, size = (frame) => JSON.stringify(frame).length) {
    const frames = [];
    let chars = 0;
    for (const entry of this._entries.values()) {
      if (frames.length >= maxCount) break;
      chars += size(this._subscribeFrame(entry, 0)) + 1;
      if (chars > maxChars) break;
      frames.push(this._subscribeFrame(entry, this._request(entry)));
    }
    return frames;
  }

  /** `connected`: every subscription not asked on this connection yet, or changed since, is sent. */
  connected() {
    for (const entry of this._entries.values()) if (!entry.sent || entry.queued) this._sendSubscribe(entry);
  }

  /** The connection is gone: what was live recovers on the next one; nothing waits for answers. */
  lost() {
    for (const entry of this._entries.values()) {
      if (entry.retryTimer !== null) this._host.clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
      if (entry.confirmed) entry.recovering = true;
      entry.confirmed = entry.sent = false;
      if (entry.state === "active") entry.state = "pending";
      entry.paused = false; // the next connection's gateway says it again after `subscribed`
    }
    this._candidates = [];
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) {
      if (p.resolve) p.resolve(); // unsubscribes: nothing left to wait for
      if (p.ask) p.ask.reject(new TelegraphyError("disconnected", "the connection was lost before the answer", { id: p.ask.id, event: p.ask.event }));
    }
  }

  /** A presence request (section 11) for a confirmed presence entry: resolves with the reply's data. */
  _ask(entry, type) {
    const id = this._host.id();
    return new Promise((resolve, reject) => {
      this._pending.set(id, { ask: { type, id, event: entry.pattern, resolve, reject } });
      if (!this._host.send({ type, id, event: entry.pattern })) {
        this._pending.delete(id);
        reject(new TelegraphyError("not_connected", "not connected", { id, event: entry.pattern }));
      }
    });
  }

  /**
   * A request of the connection itself (not of a subscription), e.g. `events` (section 12): resolves with
   * the answer's data, rejects with the gateway's error; `fields` are sent with it.
   */
  request(type, fields) {
    const id = this._host.id();
    return new Promise((resolve, reject) => {
      this._pending.set(id, { ask: { type, id, event: fields.event, resolve, reject } });
      if (!this._host.send({ type, id, ...fields })) {
        this._pending.delete(id);
        reject(new TelegraphyError("not_connected", "not connected", { id, event: fields.event }));
      }
    });
  }

  _onAnswer(frame) {
    const p = this._pending.get(frame.id);
    if (!p?.ask || p.ask.type !== frame.type) return;
    this._pending.delete(frame.id);
    if (frame.type === "events") {
      p.ask.resolve({
        mode: typeof frame.mode === "string" ? frame.mode : "open",
        events: Array.isArray(frame.events) ? frame.events : [],
        truncated: frame.truncated === true,
      });
    } else if (frame.type === "presence") {
      p.ask.resolve({ clients: Array.isArray(frame.clients) ? frame.clients : [], truncated: frame.truncated === true });
    } else {
      p.ask.resolve({ clients: frame.clients, users: frame.users });
    }
  }

  // `join`/`leave`/`presence_paused`/`presence_resumed` name the presence subscription in `sub`, like
  // events. Malformed ones are dropped.
  _onPresenceEvent(frame) {
    const entry = typeof frame.sub === "string" ? this._entries.get(frame.sub) : undefined;
    if (!entry || !entry.presence) return;
    let arg;
    if (frame.type === "join" || frame.type === "leave") {
      if (typeof frame.client !== "string") return;
      arg = { client: frame.client, user: frame.user };
      if (frame.info !== undefined) arg.info = frame.info;
    } else {
      // Over the gateway's bound no join/leave follow until `presence_resumed` (nothing is replayed then).
      if (!Number.isSafeInteger(frame.clients) || frame.clients < 0) return;
      entry.paused = frame.type === "presence_paused";
      arg = { clients: frame.clients };
    }
    for (const sub of [...entry.subs]) sub._presence(frame.type, arg);
  }

  /** A server frame other than `connected` and `ping`. */
  receive(frame) {
    switch (frame.type) {
      case "event":
        return this._onEvent(frame);
      case "position":
        return this._onPosition(frame);
      case "pong":
        return this._onPong(frame);
      case "subscribed":
        return this._onSubscribed(frame);
      case "unsubscribed":
        return this._onUnsubscribed(frame);
      case "presence":
      case "presence_stats":
      case "events":
        return this._onAnswer(frame);
      case "join":
      case "leave":
      case "presence_paused":
      case "presence_resumed":
        return this._onPresenceEvent(frame);
      case "error":
        return this._onError(frame);
      default: // frame types of later protocol versions
    }
  }

  _call(fn, arg) {
    this._host.call(fn, arg);
  }

  // An unnamed subscription shares the gateway subscription of the same pattern and filters.
  _find(pattern, spec, presence) {
    for (const entry of this._entries.values()) {
      if (!entry.explicit && entry.pattern === pattern && entry.spec === spec && entry.presence === presence) return entry;
    }
    return null;
  }

  // The pattern itself while it is free (and, when the name must be sent, a valid name), else
  // "<pattern>:<n>" or "tg:<n>".
  _freeName(pattern, spec, presence) {
    const plain = spec.filter === null && spec.exclude === null && !presence;
    if (!this._entries.has(pattern) && (plain || validateSubName(pattern))) return pattern;
    for (;;) {
      const n = ++this._names;
      const name = validateSubName(`${pattern}:${n}`) ? `${pattern}:${n}` : `tg:${n}`;
      if (!this._entries.has(name)) return name;
    }
  }

  _add(key, pattern, spec, explicit, presence) {
    const entry = new Entry(key, pattern, spec, explicit, presence);
    this._entries.set(key, entry);
    this._queue(entry);
    return entry;
  }

  // Subscribe frames go out in a microtask, so `subscribe(...).filter(...).exclude(...)` sends one.
  _queue(entry) {
    entry.queued = true;
    if (this._flushQueued) return;
    this._flushQueued = true;
    queueMicrotask(() => {
      this._flushQueued = false;
      if (!this._host.live()) return; // `connected` sends them all
      for (const e of this._entries.values()) if (e.queued) this._sendSubscribe(e);
    });
  }

  // New filters for a handle (Subscription.filter/exclude). A named subscription, or one this handle
  // holds alone, is replaced under its name (section 8); a shared one is left to the other handles.
  _respec(sub, spec) {
    checkSize(spec); // before anything changes
    const entry = sub._entry;
    const text = canonical(spec);
    if (text === entry.spec) return;
    const alone = entry.explicit || (entry.subs.size === 1 && validateSubName(entry.key));
    const target = entry.explicit ? null : this._find(entry.pattern, text, entry.presence);
    if (!target && alone) {
      entry.filter = spec.filter;
      entry.exclude = spec.exclude;
      entry.state = "pending";
      entry.error = null;
      if (entry.reqId !== null) {
        // Asked before (a chain in the subscribe tick was not): the gateway may still hold the old
        // filters under this name and sends their frames until it answers the new subscribe (it
        // answers in order, and frames of the new filters follow the answer). Those are dropped, and
        // the position starts over from the answer: the old one is another filter's, nothing to recover.
        entry.replaced = true;
        entry.position = entry.last = null;
        entry.confirmed = entry.recovering = false;
      }
      this._queue(entry);
      return;
    }
    const moved = target || this._add(this._freeName(entry.pattern, spec, entry.presence), entry.pattern, spec, false, entry.presence);
    const waiters = sub._takeWaiters();
    this._release(sub);
    sub._entry = moved;
    moved.subs.add(sub);
    moved.waiters.push(...waiters);
    if (moved.state !== "pending") moved.settle(moved.state === "failed" ? moved.error : null);
  }

  // The one place a subscribe frame is built: the name when it must be sent, the filters, and
  // `since` when the subscription has a position and is not live on this connection (section 7).
  _subscribeFrame(entry, id) {
    const frame = { type: "subscribe", id, event: entry.pattern };
    if (entry.named) frame.sub = entry.key;
    if (entry.filter) frame.filter = entry.filter;
    if (entry.exclude) frame.exclude = entry.exclude;
    if (entry.presence) frame.presence = true;
    const since = this._since(entry);
    if (since) frame.since = since;
    return frame;
  }

  _since(entry) {
    return !entry.confirmed && entry.position ? { ...entry.position } : null;
  }

  // A subscribe request for entry is going out: the answer to its id is the one that counts.
  _request(entry) {
    const id = this._host.id();
    entry.reqId = id;
    entry.queued = false;
    entry.sent = true;
    if (entry.state !== "failed") entry.state = "pending";
    this._pending.set(id, { entry, since: this._since(entry), named: entry.named });
    return id;
  }

  _sendSubscribe(entry) {
    const frame = this._subscribeFrame(entry, 0);
    frame.id = this._request(entry);
    this._host.send(frame);
  }

  _current(entry, id) {
    return entry && this._entries.get(entry.key) === entry && entry.reqId === id ? entry : null;
  }

  _onSubscribed(frame) {
    const p = this._pending.get(frame.id);
    this._pending.delete(frame.id);
    const entry = this._current(p?.entry, frame.id);
    if (!entry) return;
    if (p.named && frame.sub !== entry.key) {
      // A gateway without section 8 ignores `sub` and filters: its events would not be this subscription's.
      const error = new TelegraphyError("unsupported", "the gateway does not support named or filtered subscriptions", {
        id: frame.id,
        event: entry.pattern,
      });
      const plain = this._entries.get(entry.pattern); // an unnamed subscription the old gateway serves as well
      if (!plain || plain === entry) this._host.send({ type: "unsubscribe", id: this._host.id(), event: entry.pattern });
      return this._refuse(entry, error);
    }
    entry.state = "active";
    entry.confirmed = true;
    entry.replaced = false;
    entry.error = null;
    entry.retries = 0;
    const info = this._track(entry, frame, p.since);
    entry.settle(null);
    if (!info) return;
    for (const sub of [...entry.subs]) sub._recovered(info);
    this._host.emit("recovered", info);
  }

  // Section 7 bookkeeping for a `subscribed` answer. Returns what to tell the app when the answer
  // follows a lost connection or a `since`, else null.
  _track(entry, frame, since) {
    const at = typeof frame.epoch === "string" && Number.isSafeInteger(frame.seq) ? { epoch: frame.epoch, seq: frame.seq } : null;
    const told = since !== null || entry.recovering;
    entry.recovering = false;
    const recovered = since !== null && frame.recovered === true;
    if (recovered) {
      // The missed events (seq <= at.seq) follow this answer: nothing at or below `since` is new, and
      // the position moves to `at` once all of them have arrived.
      if (!sameEpoch(entry.last, since) || entry.last.seq < since.seq) entry.last = since;
      if (at && at.epoch === since.epoch && at.seq > since.seq) this._barrier(entry, at);
    } else if (since !== null || (at && !sameEpoch(entry.position, at))) {
      // Not recovered (the app reloads), or a first position, or a new epoch: start over from `at`.
      entry.position = at;
      if (!sameEpoch(entry.last, at)) entry.last = null;
    } else if (at && at.seq > entry.position.seq) {
      this._barrier(entry, at); // frames held before the answer may still be at or below `at`
    }
    return told ? { recovered, epoch: at && at.epoch, seq: at && at.seq, sub: entry.key, event: entry.pattern } : null;
  }

  // Adopt `at` as the entry's position once every frame the gateway queued before its answer has
  // arrived: the gateway answers requests in order, so the `pong` to a ping sent now comes after them.
  _barrier(entry, at) {
    this._candidates.push({ entry, at });
    if (this._candidates.length > 1) return;
    queueMicrotask(() => {
      const adopt = this._candidates;
      this._candidates = [];
      if (!adopt.length || !this._host.live()) return;
      const id = this._host.id();
      this._pending.set(id, { adopt });
      this._host.send({ type: "ping", id });
    });
  }

  _onPong(frame) {
    const p = this._pending.get(frame.id);
    if (!p?.adopt) return;
    this._pending.delete(frame.id);
    for (const { entry, at } of p.adopt) {
      const pos = entry.position;
      if (this._entries.get(entry.key) === entry && sameEpoch(pos, at) && pos.seq < at.seq) entry.position = at;
    }
  }

  _onUnsubscribed(frame) {
    const p = this._pending.get(frame.id);
    this._pending.delete(frame.id);
    if (p?.resolve) p.resolve();
  }

  _onError(frame) {
    const p = frame.id != null ? this._pending.get(frame.id) : undefined;
    this._pending.delete(frame.id);
    if (p?.ask) {
      const code = typeof frame.code === "string" ? frame.code : "error";
      return p.ask.reject(new TelegraphyError(code, frame.message || code, { id: frame.id, event: p.ask.event }));
    }
    const code = typeof frame.code === "string" ? frame.code : "error";
    const error = new TelegraphyError(code, frame.message || code, { id: frame.id, event: p?.entry?.pattern });
    if (p?.resolve) p.resolve();
    const entry = this._current(p?.entry, frame.id);
    if (!entry) return this._host.error(error);
    if (code !== "internal") return this._refuse(entry, error);
    this._retrySubscribe(entry); // the gateway could not do it now
    for (const sub of [...entry.subs]) sub._fail(error);
    this._host.error(error);
  }

  // The gateway refused the subscription: it stays failed until the next reconnect or new filters.
  _refuse(entry, error) {
    entry.state = "failed";
    entry.error = error;
    entry.settle(error);
    for (const sub of [...entry.subs]) sub._fail(error);
    this._host.error(error);
  }

  _retrySubscribe(entry) {
    const delay = this._host.retryDelay(entry.retries++);
    entry.retryTimer = this._host.setTimeout(() => {
      entry.retryTimer = null;
      if (this._host.live() && this._entries.get(entry.key) === entry) this._sendSubscribe(entry);
    }, delay);
  }

  _onEvent(frame) {
    if (typeof frame.name !== "string") return;
    let entries;
    if (typeof frame.sub === "string") {
      const entry = this._entries.get(frame.sub);
      entries = entry ? [entry] : [];
    } else {
      entries = this._entries.values(); // a gateway that does not say which subscription matched
    }
    for (const entry of entries) {
      if (entry.replaced || !matches(entry.pattern, frame.name) || !this._fresh(entry, frame)) continue;
      for (const sub of [...entry.subs]) sub._deliver(frame);
    }
  }

  // Section 7: every event of the subscription up to `seq` has been sent, so a quiet subscription's
  // resume position moves forward (it would otherwise age out of the history window). Only within the
  // epoch it already has, and only while it is live on this connection.
  _onPosition(frame) {
    if (typeof frame.sub !== "string" || typeof frame.epoch !== "string" || !Number.isSafeInteger(frame.seq)) return;
    const entry = this._entries.get(frame.sub);
    if (!entry || !entry.confirmed || entry.replaced) return;
    const at = { epoch: frame.epoch, seq: frame.seq };
    if (sameEpoch(entry.position, at) && at.seq > entry.position.seq) entry.position = at;
  }

  // Section 7 defence in depth: an event not above the last one delivered (same epoch) is a
  // duplicate; another epoch starts over. Events without a position (no history) always pass.
  _fresh(entry, frame) {
    const { epoch, seq } = frame;
    if (typeof epoch !== "string" || !Number.isSafeInteger(seq)) return true;
    const at = { epoch, seq };
    if (sameEpoch(entry.last, at) && seq <= entry.last.seq) return false;
    entry.last = at;
    if (!sameEpoch(entry.position, at) || seq > entry.position.seq) entry.position = at;
    return true;
  }

  // A handle let go. The last one of an entry unsubscribes it on the gateway when it was asked there
  // on this connection (also before `connected`: SSE sends subscribes with the connect).
  _release(sub) {
    const entry = sub._entry;
    entry.subs.delete(sub);
    if (entry.subs.size > 0 || this._entries.get(entry.key) !== entry) return Promise.resolve();
    this._entries.delete(entry.key);
    if (entry.retryTimer !== null) this._host.clearTimeout(entry.retryTimer);
    entry.retryTimer = null;
    if (!entry.sent) return Promise.resolve();
    const id = this._host.id();
    const frame = entry.named ? { type: "unsubscribe", id, sub: entry.key } : { type: "unsubscribe", id, event: entry.pattern };
    return new Promise((resolve) => {
      this._pending.set(id, { resolve });
      if (!this._host.send(frame)) {
        this._pending.delete(id);
        resolve();
      }
    });
  }
}

