// The client: one connection to a gateway (handshake, heartbeat, timeouts; PROTOCOL.md section 3) wiring
// the units: a transport per connection attempt, Recovery (what follows a lost connection) and
// Subscriptions (the page's subscriptions). Also the public API and its static helpers.
import { validateName, validatePattern, matches, contains, encodeKey, decodeKey, validateSubName } from "./names.js";
import { checkConditions } from "./filters.js";
import { backoffDelay } from "./backoff.js";
import { TelegraphyError } from "./errors.js";
import { toWebSocketUrl, toHttpUrl, toSseUrl } from "./urls.js";
import { noop, parseJson } from "./transport.js";
import { WebSocketTransport } from "./websocket.js";
import { SseTransport, asciiJson } from "./sse.js";
import { Recovery } from "./recovery.js";
import { Subscription } from "./subscription.js";
import { Subscriptions } from "./subscriptions.js";
import { Actions, RpcError } from "./actions.js";
import { pageConfig } from "./page.js";
import { VERSION } from "./version.js";

const TRANSPORTS = { websocket: WebSocketTransport, sse: SseTransport };

const TRANSPORT_NAMES = Object.keys(TRANSPORTS);
// SSE sends the first subscribes with the connect, in a header (or, with EventSource, the URL): at most this
// much JSON (heads over ~8 KB are refused by common proxies) and this many frames; the others are POSTed
// after `connected`.
const SSE_OPENING_CHARS = 4096;
const SSE_OPENING_SUBSCRIBES = 16;

// The transports to use, in order: `options.transports` without those this environment lacks.
function usableTransports(options, env) {
  const wanted = options.transports ?? TRANSPORT_NAMES;
  if (!Array.isArray(wanted) || wanted.length === 0 || new Set(wanted).size !== wanted.length || !wanted.every((t) => TRANSPORT_NAMES.includes(t))) {
    throw new TypeError(`Telegraphy: transports must be a list of distinct names out of ${JSON.stringify(TRANSPORT_NAMES)}`);
  }
  const usable = wanted.filter((t) => TRANSPORTS[t].usable(env));
  if (usable.length === 0) {
    throw new TypeError(
      wanted.includes("websocket")
        ? "Telegraphy: no WebSocket implementation; pass options.WebSocket"
        : "Telegraphy: no fetch (with ReadableStream, or else EventSource) implementation; pass options.fetch",
    );
  }
  return usable;
}

// The page's instance and the config it is made from; outside the class, which then never names itself
// in its body (a bundler would rename the class to let it: Telegraphy.name stays "Telegraphy").
let pageInstance = null;
const fromPage = (options) => new Telegraphy({ ...pageConfig(), ...options });
const thePage = () => (pageInstance ||= fromPage({}));

export class Telegraphy {
  // The rules and helpers, also on the class (the <script> build defines only the global `Telegraphy`).
  /** The client's version (VERSION, as the gateway's and the Django app's). */
  static version = VERSION;
  static validateName = validateName;
  static validatePattern = validatePattern;
  static matches = matches;
  static contains = contains;
  static encodeKey = encodeKey;
  static decodeKey = decodeKey;
  static backoffDelay = backoffDelay;
  static validateSubName = validateSubName;
  static checkConditions = checkConditions;
  static Subscription = Subscription;
  static TelegraphyError = TelegraphyError;
  static RpcError = RpcError;

  /**
   * options: url (ws:, wss:, http(s): or relative; or a list of them, tried in turn from a random
   * start; or a function returning the next one, possibly as a promise), token (single-use connect
   * token; absent = anonymous, null or "" = none could be had: state "disconnected", error
   * "no_token"), getToken (async () => new token | null), tokenUrl (POST -> {"token": ...}, used when
   * getToken is absent), csrfToken (sent to tokenUrl as X-CSRFToken; default: the csrftoken cookie),
   * transports (default ["websocket", "sse"]: the first that opens is kept), sseUrl (default: derived
   * from the url, .../ws -> .../sse), WebSocket, EventSource, fetch, ReadableStream (implementations, by
   * default the globals, null for none; SSE reads its stream with fetch where ReadableStream exists, else
   * with EventSource), autoConnect
   * (default true), minDelay/maxDelay (ms), connectTimeout (ms), timers {setTimeout, clearTimeout},
   * random, now (for tests).
   */
  constructor(options = {}) {
    const url = options.url;
    if (!url || (Array.isArray(url) && url.length === 0)) throw new TypeError("Telegraphy: options.url is required");
    const timers = options.timers || {};
    this._setTimeout = timers.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = timers.clearTimeout || ((handle) => clearTimeout(handle));
    this._random = options.random || Math.random;
    this._now = options.now || Date.now;
    // An implementation given in the options, else the global one; null: none.
    const impl = (name) => (options[name] === undefined ? globalThis[name] : options[name]);
    this._env = {
      WebSocket: impl("WebSocket"),
      EventSource: impl("EventSource"),
      fetch: impl("fetch"),
      ReadableStream: impl("ReadableStream"),
      timers: { setTimeout: this._setTimeout, clearTimeout: this._clearTimeout },
      random: this._random,
    };
    this._recovery = new Recovery(options, usableTransports(options, this._env), this._random, this._now);
    this._connectTimeout = options.connectTimeout ?? 10000;
    this._sseUrl = options.sseUrl ?? null;
    if (typeof url === "function") {
      this._urlSource = url;
      this.url = null;
    } else {
      this._urls = [].concat(url).map(toWebSocketUrl);
      // Several gateways and no load balancer: spread the pages over them, then go round.
      this._urlIndex = Math.floor(this._random() * this._urls.length) % this._urls.length;
      this.url = this._urls[this._urlIndex];
    }

    this.state = "disconnected";
    this.session = null;
    this.client = null; // this connection's client id (`from.client` of its own publishes)
    this.node = null;
    this.transport = null; // "websocket" | "sse": of the current (or last) connection
    this._listeners = new Map();
    this._nextId = 1;
    this._subs = new Subscriptions({
      send: (frame) => this._send(frame),
      live: () => this._live,
      id: () => this._nextId++,
      emit: (type, info) => this._emit(type, info),
      error: (err) => this._emitError(err),
      call: (fn, arg) => this._call(fn, arg),
      setTimeout: this._setTimeout,
      clearTimeout: this._clearTimeout,
      retryDelay: (attempt) => this._recovery.backoff(attempt),
    });
    this._actions = new Actions({
      send: (frame) => this._send(frame),
      live: () => this._live,
      id: () => this._nextId++,
      setTimeout: this._setTimeout,
      clearTimeout: this._clearTimeout,
    });
    this._conn = null; // the current transport
    this._connOpened = false; // it opened
    this._live = false; // `connected` received on it
    this._gen = 0; // bumps to cancel an _open waiting for a token or a URL
    this._opened = 0; // connections opened so far
    this._sameUrl = false; // the next connection goes to the same gateway (another transport)
    this._stopped = true;
    this._timer = null;
    this._connectTimer = null;
    this._deadTimer = null;
    this._heartbeatMs = 0;
    this._auto = options.autoConnect !== false;
    // Start after the caller's synchronous setup, so `on("state")` sees "connecting".
    if (this._auto) queueMicrotask(() => this._auto && this.connect());
  }

  /** The instance configured by <script id="telegraphy-config" type="application/json">. */
  static fromPage(options = {}) {
    return fromPage(options);
  }

  /** The page's shared instance (fromPage), created on first use. */
  static page() {
    return thePage();
  }

  /** Old API: subscribe the page instance; callback(event) with event = {name, data, sub}. */
  static register(eventName, callback) {
    return thePage().subscribe(eventName, callback);
  }

  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    this._listeners.get(type)?.delete(fn);
  }

  connect() {
    this._auto = false;
    if (!this._stopped) return this;
    this._stopped = false;
    this._recovery.start();
    this._setState("connecting");
    this._open();
    return this;
  }

  close() {
    this._auto = false;
    this._stopped = true;
    this._gen++;
    this._clear("_timer");
    const conn = this._conn;
    this._detach();
    if (conn) conn.close(1000, "client closed");
    this._setState("disconnected");
  }

  /**
   * Subscribe to `pattern`; handler(event) with event = {name, data, sub}. options: onError(fn),
   * onRecover(fn), filter and exclude (section 8 conditions), name (the subscription's name on the
   * gateway), since ({epoch, seq}: recover from a position saved earlier).
   */
  subscribe(pattern, handler, options) {
    return this._subs.subscribe(pattern, handler, options);
  }

  /**
   * Publish event `name` (section 13.1) as this connection's user; resolves once the gateway handed it to NATS
   * (`published`), rejects with an RpcError (code "forbidden", "limit_exceeded", "internal", "disconnected"...).
   * Needs a token with a publish grant. Never retried: call again if you want to.
   */
  publish(name, data) {
    return this._actions.publish(name, data);
  }

  /**
   * Call RPC `method` (section 14) with `data`; resolves with the worker's result, rejects with an RpcError
   * whose `code` is the worker's (e.g. "not_found") or the gateway's ("forbidden", "unavailable", "timeout",
   * "limit_exceeded", "internal"), or "disconnected" / "timeout" from the client. options.timeout: ms to wait
   * for the answer (default 65000). Never retried automatically: retry only methods whose handlers are
   * idempotent.
   */
  rpc(method, data, options) {
    return this._actions.rpc(method, data, options);
  }

  /**
   * The catalogued events this connection may subscribe to (PROTOCOL.md section 12): resolves with
   * {mode, events, truncated}, each event {name, patterns, kind, operations, description, data (a JSON
   * Schema), presence, version}, only those the token's grant allows. options.event (a pattern) narrows the
   * list. Waits for the connection when it is being made (up to connectTimeout); rejects with a
   * TelegraphyError: "not_connected" (closed, or not connected in time), "internal" (the gateway has not
   * loaded its catalog yet: retry), "bad_request", "disconnected" (the connection dropped before the answer).
   */
  async events(options = {}) {
    const event = options?.event;
    if (event !== undefined && !validatePattern(event)) {
      throw new TelegraphyError("bad_request", `invalid pattern ${JSON.stringify(event)}`, { event });
    }
    await this._whenLive();
    return this._subs.request("events", event === undefined ? {} : { event });
  }

  // ---- internals ----

  // Resolves once `connected` (at once when it is); rejects "not_connected" when the client is stopped or
  // stops, or after connectTimeout.
  _whenLive() {
    if (this._live) return Promise.resolve();
    // (a client made with autoConnect starts in a microtask: not stopped)
    if (this._stopped && !this._auto) return Promise.reject(new TelegraphyError("not_connected", "not connected"));
    return new Promise((resolve, reject) => {
      const done = (ok) => {
        off();
        this._clearTimeout(timer);
        if (ok) resolve();
        else reject(new TelegraphyError("not_connected", "not connected"));
      };
      const off = this.on("state", (state) => {
        if (state === "connected") done(true);
        else if (this._stopped) done(false);
      });
      const timer = this._setTimeout(() => done(false), this._connectTimeout);
    });
  }

  _emit(type, ...args) {
    const fns = this._listeners.get(type);
    if (!fns || fns.size === 0) return false;
    for (const fn of [...fns]) {
      try {
        fn(...args);
      } catch (err) {
        if (type !== "error") this._emit("error", new TelegraphyError("handler", "a listener threw", { cause: err }));
        else console.error(err);
      }
    }
    return true;
  }

  _emitError(error) {
    if (!this._emit("error", error)) console.error(error);
  }

  _call(fn, arg) {
    try {
      fn(arg);
    } catch (err) {
      this._emitError(new TelegraphyError("handler", "a handler threw", { cause: err }));
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  }

  _clear(name) {
    if (this[name] !== null) this._clearTimeout(this[name]);
    this[name] = null;
  }

  _send(frame) {
    return this._conn ? this._conn.send(frame) : false;
  }

  // The gateway for the next connection: the next one of the list (the first time: the random
  // start; the same one when only the transport changes), or whatever the url function answers.
  async _nextUrl() {
    if (!this._urlSource) {
      if (this._opened > 0 && !this._sameUrl) this._urlIndex = (this._urlIndex + 1) % this._urls.length;
      return this._urls[this._urlIndex];
    }
    const url = await this._urlSource({ attempt: this._recovery.attempt, previous: this.url });
    if (!url) throw new Error("the url function returned no URL");
    return toWebSocketUrl(url);
  }

  // Where transport `name` connects for the gateway at WebSocket URL `url`.
  _endpoint(name, url) {
    if (name === "websocket") return url;
    const sse = typeof this._sseUrl === "function" ? this._sseUrl(url) : this._sseUrl;
    return sse ? toHttpUrl(sse) : toSseUrl(url);
  }

  async _open() {
    const gen = ++this._gen;
    const name = this._recovery.transport;
    // A transport that would put a resume token in a URL (SSE over EventSource) connects with a token.
    const resumable = TRANSPORTS[name].resumable?.(this._env) ?? true;
    const dropsResume = !resumable && this._recovery.resumable;
    const got = await this._step(gen, () => this._recovery.credential(resumable), "token", "getToken failed");
    if (!got) return;
    const cred = got.value;
    if (cred === null && this._recovery.noToken) {
      return this._stop("disconnected", new TelegraphyError("no_token", "no token to connect with (the page got none)"));
    }
    if (cred === null && dropsResume) {
      const why = "SSE over EventSource (no streaming fetch here) cannot send a resume token; give the client getToken or tokenUrl";
      return this._stop("disconnected", new TelegraphyError("no_token", why));
    }
    if (cred === null) return this._stop("unauthorized");
    const next = await this._step(gen, () => this._nextUrl(), "bad_url", "the url function failed");
    if (!next) return;
    const url = next.value;
    this.url = url;
    this.transport = name;
    this._opened++;
    const conn = new TRANSPORTS[name](this._env);
    const connect = { type: "connect", id: this._nextId++, ...cred };
    const frames = [connect];
    if (name === "sse") {
      // measured as sent in the header: JSON with every non-ASCII character escaped
      const room = SSE_OPENING_CHARS - asciiJson(connect).length;
      frames.push(...this._subs.openingFrames(room, SSE_OPENING_SUBSCRIBES, (frame) => asciiJson(frame).length));
    }
    this._conn = conn;
    this._connOpened = false;
    this._recovery.sending(cred);
    conn.on("open", () => {
      this._connOpened = true;
      this._recovery.opened();
    });
    conn.on("frame", (text) => this._onMessage(text));
    conn.on("close", (code) => this._lost(code));
    conn.on("error", noop); // a close follows
    try {
      conn.open(this._endpoint(name, url), frames);
    } catch (err) {
      this._detach();
      return this._stop("disconnected", new TelegraphyError("bad_url", `cannot open ${url}`, { cause: err }));
    }
    this._connectTimer = this._setTimeout(() => this._drop("connect timeout"), this._connectTimeout);
  }

  // One awaited step of _open: {value}, or null when the attempt was cancelled meanwhile or the step
  // failed (reported, and the next attempt scheduled with backoff).
  async _step(gen, fn, code, message) {
    const current = () => gen === this._gen && !this._stopped;
    try {
      const value = await fn();
      return current() ? { value } : null;
    } catch (err) {
      if (current()) {
        this._emitError(new TelegraphyError(code, message, { cause: err }));
        this._follow(this._recovery.retry((err && err.retryAfterMs) || 0));
      }
      return null;
    }
  }

  // Forget the current connection: its events, timers, in-flight requests.
  _detach() {
    if (this._conn) this._conn.off();
    this._conn = null;
    this._live = false;
    this._clear("_connectTimer");
    this._clear("_deadTimer");
    this._subs.lost();
    this._actions.lost();
  }

  // We give up on the current connection ourselves (dead link, connect timeout).
  _drop(reason) {
    const conn = this._conn;
    if (!conn) return;
    const opened = this._connOpened;
    this._detach();
    conn.close(4000, reason);
    this._afterLoss(1006, opened);
  }

  _lost(code) {
    const opened = this._connOpened;
    this._detach();
    this._afterLoss(code, opened);
  }

  _afterLoss(code, opened) {
    if (this._stopped) return;
    this._follow(this._recovery.lost(code, opened));
  }

  // Act on a plan of the Recovery unit.
  _follow(plan) {
    if (plan.stop) return this._stop(plan.stop, plan.error);
    this._sameUrl = Boolean(plan.sameUrl);
    this._setState("reconnecting");
    this._clear("_timer");
    this._timer = this._setTimeout(() => {
      this._timer = null;
      this._open();
    }, plan.delay);
  }

  _stop(state, error) {
    this._stopped = true;
    this._clear("_timer");
    if (error) this._emitError(error);
    this._setState(state);
  }

  _alive() {
    if (!this._live) return;
    this._clear("_deadTimer");
    this._deadTimer = this._setTimeout(() => this._drop("heartbeat timeout"), 2 * this._heartbeatMs);
  }

  _onMessage(text) {
    const frame = typeof text === "string" ? parseJson(text) : null;
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") {
      this._emitError(new TelegraphyError("bad_frame", "unreadable frame from the gateway"));
      return;
    }
    this._alive();
    if (frame.type === "connected") return this._onConnected(frame);
    if (frame.type === "ping") return void this._send({ type: "pong" });
    if (this._actions.receive(frame)) return;
    this._subs.receive(frame);
  }

  _onConnected(frame) {
    this._clear("_connectTimer");
    this.session = frame.session ?? null;
    this.client = frame.client ?? null;
    this.node = frame.node ?? null;
    this._recovery.connected(frame);
    this._heartbeatMs = (frame.heartbeat > 0 ? frame.heartbeat : 25) * 1000;
    this._live = true;
    this._alive();
    this._subs.connected();
    this._setState("connected");
  }
}
