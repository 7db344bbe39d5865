/* telegraphy-client: generated from telegraphy.js by build.mjs; do not edit. */
(function (global) {
  "use strict";
// Telegraphy browser client, protocol v1 (proto/PROTOCOL.md). One dependency-free ES module.
// dist/telegraphy.global.js is generated from this file by build.mjs: keep every export in the
// form `export function|class|const NAME` so the build can strip the keyword.

// ---- Section 1: event names and patterns (the one JS place for these rules) ----

const TOKEN = /^[A-Za-z0-9_-]+$/;
const MAX_TOKENS = 16;
const MAX_BYTES = 255;

function wellFormed(text, wildcards) {
  // Valid text is ASCII, so its length in characters is its length in bytes; anything longer than
  // MAX_BYTES characters has at least as many bytes.
  if (typeof text !== "string" || text.length === 0 || text.length > MAX_BYTES) return false;
  const tokens = text.split(".");
  if (tokens.length > MAX_TOKENS) return false;
  const last = tokens.length - 1;
  for (let i = 0; i <= last; i++) {
    const t = tokens[i];
    if (wildcards && (t === "*" || (t === ">" && i === last))) continue;
    if (!TOKEN.test(t)) return false;
  }
  return true;
}

/** True when `name` is a valid event name (no wildcards). */
function validateName(name) {
  return wellFormed(name, false);
}

/** True when `pattern` is a valid pattern (`*` any token, `>` as last token). */
function validatePattern(pattern) {
  return wellFormed(pattern, true);
}

/** True when valid pattern `pattern` matches valid name `name`. */
function matches(pattern, name) {
  const p = pattern.split(".");
  const n = name.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return n.length > i;
    if (i >= n.length) return false;
    if (p[i] !== "*" && p[i] !== n[i]) return false;
  }
  return p.length === n.length;
}

/** True when every name that pattern `inner` matches, pattern `outer` matches too. */
function contains(outer, inner) {
  const a = outer.split(".");
  const b = inner.split(".");
  for (let i = 0; i < b.length; i++) {
    if (i >= a.length) return false;
    if (a[i] === ">") return true;
    if (b[i] === ">") return false;
    if (a[i] !== "*" && a[i] !== b[i]) return false;
  }
  return a.length === b.length;
}

// ---- Section 2: model event keys ----

const PLAIN_KEY = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/;

/** The name token of a model's primary key: str(pk) as is, else "-" + base64url(utf8). */
function encodeKey(pk) {
  const text = String(pk);
  if (PLAIN_KEY.test(text)) return text;
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return "-" + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Inverse of encodeKey: the str(pk) a name's key token stands for. Throws on a malformed token. */
function decodeKey(token) {
  if (!token.startsWith("-")) return token;
  const binary = atob(token.slice(1).replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

const ACTIONS = { created: "created", updated: "updated", deleted: "deleted" };

function modelEvent(name) {
  const t = name.split(".");
  if (t.length !== 4 || !Object.prototype.hasOwnProperty.call(ACTIONS, t[2])) return null;
  let key;
  try {
    key = decodeKey(t[3]);
  } catch {
    return null;
  }
  return { app: t[0], model: t[1], action: t[2], key };
}

// ---- Reconnect backoff ----

/**
 * Delay before reconnect attempt number `attempt` (0-based): full jitter over an exponentially
 * growing window, never below `min` and never above `max` milliseconds.
 */
function backoffDelay(attempt, random = Math.random, min = 500, max = 20000) {
  const span = Math.min(max, min * 2 ** Math.min(attempt, 31));
  return Math.min(max, min + Math.floor(random() * span));
}

// ---- Client ----

class TelegraphyError extends Error {
  constructor(code, message, details = {}) {
    super(message, details.cause ? { cause: details.cause } : undefined);
    this.name = "TelegraphyError";
    this.code = code;
    for (const k of ["id", "event", "closeCode"]) if (details[k] !== undefined) this[k] = details[k];
  }
}

const STOPPING_CLOSES = {
  1008: ["protocol_violation", "the gateway closed the connection: protocol violation (1008)"],
  1009: ["frame_too_big", "the gateway closed the connection: frame too big (1009)"],
  4003: ["revoked", "the gateway closed the connection: access forbidden or revoked (4003)"],
};
const MAX_AUTH_FAILURES = 3;
const RESUME_MARGIN_MS = 5000;
const noop = () => {};

function toWebSocketUrl(url) {
  let u = String(url);
  if (typeof location !== "undefined" && location.href) u = new URL(u, location.href).href;
  return u.replace(/^http(s?):/i, "ws$1:");
}

function fetchToken(tokenUrl) {
  return async () => {
    const res = await fetch(tokenUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (res.status === 401 || res.status === 403) return null;
    if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
    return (await res.json()).token || null;
  };
}

/** One pattern held on the gateway; the Subscriptions of the page that share it. */
class Entry {
  constructor(key, pattern) {
    this.key = key; // what event frames carry in `sub` (the pattern in v1)
    this.pattern = pattern;
    this.subs = new Set();
    this.state = "pending"; // pending | active | failed
    this.error = null;
    this.reqId = null;
    this.retries = 0;
    this.retryTimer = null;
    this.waiters = [];
  }

  settle(error) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) (error ? w.reject : w.resolve)(error || undefined);
  }
}

class Subscription {
  constructor(client, entry, handler, options) {
    this._client = client;
    this._entry = entry;
    this._handler = handler || null;
    this._actions = null;
    this._errorHandlers = options.onError ? [options.onError] : [];
    this._closed = false;
  }

  get pattern() {
    return this._entry.pattern;
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
    const mine = this._entry.waiters.filter((w) => w.sub === this);
    this._entry.waiters = this._entry.waiters.filter((w) => w.sub !== this);
    for (const w of mine) w.reject(new TelegraphyError("closed", "subscription closed"));
    return this._client._release(this);
  }

  _onAction(action, fn) {
    if (!this._actions) this._actions = {};
    (this._actions[action] ||= []).push(fn);
    return this;
  }

  _deliver(frame) {
    if (this._closed) return;
    const event = { name: frame.name, data: frame.data, sub: frame.sub ?? this._entry.key };
    if (this._handler) this._client._call(this._handler, event);
    if (!this._actions) return;
    const model = modelEvent(frame.name);
    const fns = model && this._actions[model.action];
    if (fns) for (const fn of fns) this._client._call(fn, { ...event, ...model });
  }

  _fail(error) {
    for (const fn of this._errorHandlers) this._client._call(fn, error);
  }
}

let pageInstance = null;

class Telegraphy {
  /**
   * options: url (ws:, wss:, http(s): or relative), token (single-use connect token; absent =
   * anonymous, null or "" = none could be had: state "disconnected", error "no_token"), getToken
   * (async () => new token | null), tokenUrl (GET -> {"token": ...}, used when getToken is absent),
   * WebSocket (implementation), autoConnect (default true), minDelay/maxDelay (ms),
   * connectTimeout (ms), timers {setTimeout, clearTimeout}, random, now (for tests).
   */
  constructor(options = {}) {
    if (!options.url) throw new TypeError("Telegraphy: options.url is required");
    this.url = toWebSocketUrl(options.url);
    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    if (typeof this._WebSocket !== "function") {
      throw new TypeError("Telegraphy: no WebSocket implementation; pass options.WebSocket");
    }
    this._token = options.token || null;
    this._getToken = options.getToken || (options.tokenUrl ? fetchToken(options.tokenUrl) : null);
    // No `token` option at all: anonymous. `token: null` or "": the page could not get one (e.g. the
    // server could not mint it) and there is nothing to connect with.
    this._anonymous = options.token === undefined && !this._getToken;
    this._noToken = !this._token && !this._getToken && !this._anonymous;
    const timers = options.timers || {};
    this._setTimeout = timers.setTimeout || ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = timers.clearTimeout || ((handle) => clearTimeout(handle));
    this._random = options.random || Math.random;
    this._now = options.now || Date.now;
    this._minDelay = options.minDelay ?? 500;
    this._maxDelay = options.maxDelay ?? 20000;
    this._connectTimeout = options.connectTimeout ?? 10000;

    this.state = "disconnected";
    this.session = null;
    this.node = null;
    this._listeners = new Map();
    this._entries = new Map();
    this._pending = new Map();
    this._nextId = 1;
    this._ws = null;
    this._live = false; // `connected` received on the current socket
    this._sent = null; // credential sent on the current socket
    this._gen = 0; // bumps to cancel an _open waiting for a token
    this._stopped = true;
    this._timer = null;
    this._connectTimer = null;
    this._deadTimer = null;
    this._heartbeatMs = 0;
    this._attempt = 0;
    this._authFailures = 0;
    this._resume = null;
    this._resumeExpiresAt = 0;
    this._auto = options.autoConnect !== false;
    // Start after the caller's synchronous setup, so `on("state")` sees "connecting".
    if (this._auto) queueMicrotask(() => this._auto && this.connect());
  }

  /** The instance configured by <script id="telegraphy-config" type="application/json">. */
  static fromPage(options = {}) {
    const el = typeof document !== "undefined" && document.getElementById("telegraphy-config");
    if (!el) throw new Error('Telegraphy.fromPage: no <script id="telegraphy-config"> on the page');
    return new Telegraphy({ ...JSON.parse(el.textContent), ...options });
  }

  /** The page's shared instance (fromPage), created on first use. */
  static page() {
    return (pageInstance ||= Telegraphy.fromPage());
  }

  /** Old API: subscribe the page instance; callback(event) with event = {name, data, sub}. */
  static register(eventName, callback) {
    return Telegraphy.page().subscribe(eventName, callback);
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
    this._attempt = 0;
    this._authFailures = 0;
    this._setState("connecting");
    this._open();
    return this;
  }

  close() {
    this._auto = false;
    this._stopped = true;
    this._gen++;
    this._clear("_timer");
    const ws = this._ws;
    this._detach();
    if (ws) closeQuietly(ws, 1000, "client closed");
    this._setState("disconnected");
  }

  /**
   * Subscribe to `pattern`; handler(event) with event = {name, data, sub}. options: onError(fn).
   * (Reserved for later protocol versions: filter, exclude.)
   */
  subscribe(pattern, handler, options) {
    if (handler && typeof handler === "object") [handler, options] = [undefined, handler];
    options = options || {};
    if (!validatePattern(pattern)) throw new TypeError(`Telegraphy: invalid pattern ${JSON.stringify(pattern)}`);
    if (handler != null && typeof handler !== "function") throw new TypeError("Telegraphy: handler must be a function");
    if (options.filter !== undefined || options.exclude !== undefined) {
      throw new TypeError("Telegraphy: filter/exclude are not part of protocol v1 yet");
    }
    let entry = this._entries.get(pattern);
    const fresh = !entry;
    if (fresh) {
      entry = new Entry(pattern, pattern);
      this._entries.set(entry.key, entry);
    }
    const sub = new Subscription(this, entry, handler, options);
    entry.subs.add(sub);
    if (fresh && this._live) this._sendSubscribe(entry);
    return sub;
  }

  // ---- internals ----

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

  _id() {
    return this._nextId++;
  }

  _send(frame) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  // The credential for the next connect: resume > unused connect token > getToken > anonymous.
  _credential() {
    if (this._resume && this._now() < this._resumeExpiresAt - RESUME_MARGIN_MS) return { resume: this._resume };
    this._resume = null;
    if (this._token) return { token: this._token };
    if (this._getToken) {
      return Promise.resolve(this._getToken()).then((token) => {
        if (!token) return null;
        this._token = token;
        return { token };
      });
    }
    return this._anonymous ? {} : null;
  }

  async _open() {
    const gen = ++this._gen;
    let cred;
    try {
      cred = await this._credential();
    } catch (err) {
      if (gen !== this._gen || this._stopped) return;
      this._emitError(new TelegraphyError("token", "getToken failed", { cause: err }));
      this._scheduleReconnect(false);
      return;
    }
    if (gen !== this._gen || this._stopped) return;
    if (cred === null && this._noToken) {
      return this._stop("disconnected", new TelegraphyError("no_token", "no token to connect with (the page got none)"));
    }
    if (cred === null) return this._stop("unauthorized");
    let ws;
    try {
      ws = new this._WebSocket(this.url);
    } catch (err) {
      return this._stop("disconnected", new TelegraphyError("bad_url", `cannot open ${this.url}`, { cause: err }));
    }
    this._ws = ws;
    this._sent = null;
    ws.onopen = () => {
      if (this._ws !== ws) return;
      this._sent = cred;
      this._send({ type: "connect", id: this._id(), ...cred });
    };
    ws.onmessage = (e) => this._ws === ws && this._onMessage(e.data);
    ws.onclose = (e) => this._ws === ws && this._lost(e.code, e.reason);
    ws.onerror = noop; // a close event follows
    this._connectTimer = this._setTimeout(() => this._drop("connect timeout"), this._connectTimeout);
  }

  // Forget the current socket: handlers, timers, in-flight requests.
  _detach() {
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = noop;
    }
    this._ws = null;
    this._live = false;
    this._clear("_connectTimer");
    this._clear("_deadTimer");
    for (const entry of this._entries.values()) {
      if (entry.retryTimer !== null) this._clearTimeout(entry.retryTimer);
      entry.retryTimer = null;
      if (entry.state === "active") entry.state = "pending";
    }
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) if (p.resolve) p.resolve(); // unsubscribes: nothing left to wait for
  }

  // We give up on the current socket ourselves (dead link, connect timeout).
  _drop(reason) {
    const ws = this._ws;
    if (!ws) return;
    this._detach();
    closeQuietly(ws, 4000, reason);
    this._afterLoss(1006);
  }

  _lost(code) {
    this._detach();
    this._afterLoss(code);
  }

  _afterLoss(code) {
    if (this._stopped) return;
    if (code === 4001) return this._unauthorized();
    const stop = STOPPING_CLOSES[code];
    if (stop) return this._stop("disconnected", new TelegraphyError(stop[0], stop[1], { closeCode: code }));
    this._scheduleReconnect(code === 1012 && this._attempt === 0); // 1012: at once, the first time
  }

  _unauthorized() {
    const sent = this._sent || {};
    if (sent.resume) this._resume = null;
    if (sent.token) {
      this._token = null;
      this._authFailures++;
    }
    const canRetry = this._resume || this._token || (this._getToken && this._authFailures < MAX_AUTH_FAILURES);
    if (!canRetry) return this._stop("unauthorized");
    this._scheduleReconnect(Boolean(sent.resume)); // an expired resume: fetch a token at once
  }

  _stop(state, error) {
    this._stopped = true;
    this._clear("_timer");
    if (error) this._emitError(error);
    this._setState(state);
  }

  _scheduleReconnect(immediate) {
    this._setState("reconnecting");
    const delay = immediate ? 0 : backoffDelay(this._attempt, this._random, this._minDelay, this._maxDelay);
    this._attempt++;
    this._clear("_timer");
    this._timer = this._setTimeout(() => {
      this._timer = null;
      this._open();
    }, delay);
  }

  _alive() {
    if (!this._live) return;
    this._clear("_deadTimer");
    this._deadTimer = this._setTimeout(() => this._drop("heartbeat timeout"), 2 * this._heartbeatMs);
  }

  _onMessage(text) {
    let frame;
    try {
      frame = typeof text === "string" ? JSON.parse(text) : null;
    } catch {
      frame = null;
    }
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") {
      this._emitError(new TelegraphyError("bad_frame", "unreadable frame from the gateway"));
      return;
    }
    this._alive();
    switch (frame.type) {
      case "connected":
        return this._onConnected(frame);
      case "event":
        return this._onEvent(frame);
      case "ping":
        return void this._send({ type: "pong" });
      case "subscribed":
        return this._onSubscribed(frame);
      case "unsubscribed":
        return this._onUnsubscribed(frame);
      case "error":
        return this._onError(frame);
      default: // pong, and frame types of later protocol versions
    }
  }

  _onConnected(frame) {
    this._clear("_connectTimer");
    this.session = frame.session ?? null;
    this.node = frame.node ?? null;
    if (typeof frame.resume === "string") {
      this._resume = frame.resume;
      this._resumeExpiresAt = this._now() + (Number(frame.resume_expires_in) || 0) * 1000;
    }
    this._token = null; // connect tokens are single use
    this._attempt = 0;
    this._authFailures = 0;
    this._heartbeatMs = (frame.heartbeat > 0 ? frame.heartbeat : 25) * 1000;
    this._live = true;
    this._alive();
    for (const entry of this._entries.values()) this._sendSubscribe(entry);
    this._setState("connected");
  }

  // The one place a subscribe frame is built (later: since/filter go here).
  _subscribeFrame(entry, id) {
    return { type: "subscribe", id, event: entry.pattern };
  }

  _sendSubscribe(entry) {
    const id = this._id();
    entry.reqId = id;
    if (entry.state !== "failed") entry.state = "pending";
    this._pending.set(id, { entry });
    this._send(this._subscribeFrame(entry, id));
  }

  _current(entry, id) {
    return entry && this._entries.get(entry.key) === entry && entry.reqId === id ? entry : null;
  }

  _onSubscribed(frame) {
    const p = this._pending.get(frame.id);
    this._pending.delete(frame.id);
    const entry = this._current(p?.entry, frame.id);
    if (!entry) return;
    entry.state = "active";
    entry.error = null;
    entry.retries = 0;
    entry.settle(null);
  }

  _onUnsubscribed(frame) {
    const p = this._pending.get(frame.id);
    this._pending.delete(frame.id);
    if (p?.resolve) p.resolve();
  }

  _onError(frame) {
    const p = frame.id != null ? this._pending.get(frame.id) : undefined;
    this._pending.delete(frame.id);
    const code = typeof frame.code === "string" ? frame.code : "error";
    const error = new TelegraphyError(code, frame.message || code, { id: frame.id, event: p?.entry?.pattern });
    if (p?.resolve) p.resolve();
    const entry = this._current(p?.entry, frame.id);
    if (entry) {
      if (code === "internal") {
        this._retrySubscribe(entry); // the gateway could not do it now
      } else {
        entry.state = "failed";
        entry.error = error;
        entry.settle(error);
      }
      for (const sub of [...entry.subs]) sub._fail(error);
    }
    this._emitError(error);
  }

  _retrySubscribe(entry) {
    const delay = backoffDelay(entry.retries++, this._random, this._minDelay, this._maxDelay);
    entry.retryTimer = this._setTimeout(() => {
      entry.retryTimer = null;
      if (this._live && this._entries.get(entry.key) === entry) this._sendSubscribe(entry);
    }, delay);
  }

  _onEvent(frame) {
    if (typeof frame.name !== "string") return;
    let entries;
    if (typeof frame.sub === "string") {
      const entry = this._entries.get(frame.sub);
      entries = entry ? [entry] : [];
    } else {
      entries = this._entries.values(); // a gateway that does not say which pattern matched
    }
    for (const entry of entries) {
      if (!matches(entry.pattern, frame.name)) continue;
      for (const sub of [...entry.subs]) sub._deliver(frame);
    }
  }

  _release(sub) {
    const entry = sub._entry;
    entry.subs.delete(sub);
    if (entry.subs.size > 0 || this._entries.get(entry.key) !== entry) return Promise.resolve();
    this._entries.delete(entry.key);
    if (entry.retryTimer !== null) this._clearTimeout(entry.retryTimer);
    entry.retryTimer = null;
    if (!this._live) return Promise.resolve();
    const id = this._id();
    return new Promise((resolve) => {
      this._pending.set(id, { resolve });
      this._send({ type: "unsubscribe", id, event: entry.pattern });
    });
  }
}

function closeQuietly(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    // already closed or closing
  }
}

Telegraphy.validateName = validateName;
Telegraphy.validatePattern = validatePattern;
Telegraphy.matches = matches;
Telegraphy.contains = contains;
Telegraphy.encodeKey = encodeKey;
Telegraphy.decodeKey = decodeKey;
Telegraphy.backoffDelay = backoffDelay;
Telegraphy.Subscription = Subscription;
Telegraphy.TelegraphyError = TelegraphyError;
  global.Telegraphy = Telegraphy;
})(typeof globalThis !== "undefined" ? globalThis : this);
