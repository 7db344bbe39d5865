/* telegraphy-client: generated from telegraphy.js by build.mjs; do not edit. */
(function (global) {
  "use strict";
// Telegraphy browser client, protocol v1 (proto/PROTOCOL.md). One dependency-free ES module, in
// units that know little of each other: the name/key/filter rules, transports (WebSocket, SSE),
// Recovery (what follows a lost connection), Subscriptions (registry, routing, positions) and the
// Telegraphy connection that wires them.
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

// In every model event the action and the key are the last two tokens (section 2): the standard
// `<app>.<model>.<action>.<key>`, or an application's own space such as `demo.mine.<owner>.<action>.<key>`.
function modelEvent(name) {
  const t = name.split(".");
  const n = t.length;
  if (n < 3 || !Object.prototype.hasOwnProperty.call(ACTIONS, t[n - 2])) return null;
  let key;
  try {
    key = decodeKey(t[n - 1]);
  } catch {
    return null;
  }
  const standard = n === 4;
  return { app: standard ? t[0] : null, model: standard ? t[1] : null, scope: t.slice(0, n - 2).join("."), action: t[n - 2], key };
}

// ---- Section 8: subscription names and filter shapes ----

const SUB_NAME = /^[A-Za-z0-9_.:*>-]{1,64}$/;

/** True when `name` may name a subscription (`sub`, section 8). */
function validateSubName(name) {
  return typeof name === "string" && SUB_NAME.test(name);
}

// The JSON type each lookup's value must have (section 8; the gateway refuses the same with
// bad_request). The gateway evaluates filters and checks the rest: regex syntax, sizes and counts.
const isText = (v) => typeof v === "string";
const isOrdered = (v) => typeof v === "string" || Number.isFinite(v);
const TEXT = [isText, "a string"];
const ORDERED = [isOrdered, "a number or a string"];
const SHAPES = {
  exact: [() => true, ""],
  iexact: [(v) => v === null || isText(v), "a string or null"],
  contains: TEXT,
  icontains: TEXT,
  startswith: TEXT,
  istartswith: TEXT,
  endswith: TEXT,
  iendswith: TEXT,
  in: [(v) => Array.isArray(v), "a list"],
  gt: ORDERED,
  gte: ORDERED,
  lt: ORDERED,
  lte: ORDERED,
  range: [(v) => Array.isArray(v) && v.length === 2 && v.every(isOrdered), "[low, high] of numbers or strings"],
  isnull: [(v) => typeof v === "boolean", "true or false"],
  regex: TEXT,
  iregex: TEXT,
};
const LOOKUPS = new Set(Object.keys(SHAPES));

/**
 * Throws a TypeError when `conditions` is not a well-shaped filter/exclude object
 * ({"field__lookup": value}); returns null for an absent or empty one, else the object.
 */
function checkConditions(conditions, what = "filter") {
  if (conditions === undefined || conditions === null) return null;
  if (typeof conditions !== "object" || Array.isArray(conditions)) {
    throw new TypeError(`Telegraphy: ${what} must be an object of "field__lookup": value`);
  }
  const keys = Object.keys(conditions);
  for (const key of keys) {
    const value = conditions[key];
    if (key === "" || key.split("__").some((part) => part === "")) {
      throw new TypeError(`Telegraphy: ${what} key ${JSON.stringify(key)} has an empty field`);
    }
    if (value === undefined || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
      throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs a JSON value`);
    }
    // The last part is the lookup when it is one and something precedes it, else a field (exact).
    const last = key.slice(key.lastIndexOf("__") + 2);
    const shape = SHAPES[key.includes("__") && LOOKUPS.has(last) ? last : "exact"];
    if (!shape[0](value)) throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs ${shape[1]}`);
  }
  return keys.length ? conditions : null;
}

// JSON with object keys sorted: equal filters give equal text.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
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

// ---- Errors, URLs, tokens ----

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

// `url` made absolute against the page (when there is one).
function absolute(url) {
  const u = String(url);
  return typeof location !== "undefined" && location.href ? new URL(u, location.href).href : u;
}

function toWebSocketUrl(url) {
  return absolute(url).replace(/^http(s?):/i, "ws$1:");
}

/**
 * The SSE endpoint of a gateway (section 10.1) from its WebSocket URL: ws(s)://host/path/ws ->
 * http(s)://host/path/sse; a path not ending in /ws gets /sse appended. An explicit `sseUrl` option
 * (absolute or relative to the page) replaces this.
 */
function toSseUrl(wsUrl) {
  const u = new URL(absolute(wsUrl).replace(/^ws(s?):/i, "http$1:"));
  u.pathname = u.pathname.endsWith("/ws") ? u.pathname.slice(0, -2) + "sse" : u.pathname.replace(/\/?$/, "/sse");
  u.hash = "";
  return u.href;
}

/** The value of cookie `name` in this document ("" when absent or without a document). */
function readCookie(name) {
  if (typeof document === "undefined" || typeof document.cookie !== "string") return "";
  for (const part of document.cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return "";
}

/**
 * getToken for a `tokenUrl`: POST with same-origin credentials and the CSRF token in X-CSRFToken (the
 * `csrfToken` option, which the Django page config carries, else the `csrftoken` cookie). 401/403: no token
 * (the client stops, unauthorized). 429: an error with `retryAfterMs` (Retry-After), the next attempt waits
 * at least that long. Other failures: an error, retried with backoff.
 */
function fetchToken(tokenUrl, csrfToken) {
  return async () => {
    const headers = { Accept: "application/json" };
    const csrf = csrfToken || readCookie("csrftoken");
    if (csrf) headers["X-CSRFToken"] = csrf;
    const res = await fetch(tokenUrl, { method: "POST", credentials: "same-origin", headers });
    if (res.status === 401 || res.status === 403) return null;
    if (res.status === 429) {
      const seconds = Number(res.headers.get("Retry-After"));
      const err = new Error("token endpoint answered HTTP 429 (rate limited)");
      err.retryAfterMs = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
      throw err;
    }
    if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
    return (await res.json()).token || null;
  };
}

// ---- Transports (section 10): they carry frames and the close, nothing else ----
//
// One transport object per connection attempt. open(url, frames) starts it; `frames` (client frames)
// go to the gateway first, in order. send(frame) queues or sends one more frame and returns false
// when the transport cannot carry frames (any more). close(code, reason) ends it; no event follows.
// Events, one listener each (on(type, fn)): "open" (the gateway answered: the transport works on this
// network), "frame" (text of one server frame), "close" (code, reason: the gateway's close code, or
// 1006 when the link failed; the last event) and "error" (informational: a close follows).

class Transport {
  constructor() {
    this._listeners = {};
  }

  on(type, fn) {
    this._listeners[type] = fn;
    return this;
  }

  /** Drop every listener: nothing reaches the client any more. */
  off() {
    this._listeners = {};
  }

  _fire(type, ...args) {
    const fn = this._listeners[type];
    if (fn) fn(...args);
  }
}

function closeQuietly(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    // already closed or closing
  }
}

/** One WebSocket: one frame per text message, the close code and reason in the close frame. */
class WebSocketTransport extends Transport {
  constructor(env) {
    super();
    this._WebSocket = env.WebSocket;
    this._ws = null;
  }

  open(url, frames) {
    const ws = new this._WebSocket(url); // throws on a malformed URL
    this._ws = ws;
    ws.onopen = () => {
      for (const frame of frames) ws.send(JSON.stringify(frame));
      this._fire("open");
    };
    ws.onmessage = (e) => this._fire("frame", e.data);
    ws.onclose = (e) => {
      this._release();
      this._fire("close", e.code, e.reason);
    };
    ws.onerror = (e) => this._fire("error", e);
  }

  send(frame) {
    if (!this._ws || this._ws.readyState !== 1) return false;
    this._ws.send(JSON.stringify(frame));
    return true;
  }

  close(code, reason) {
    const ws = this._ws;
    this.off();
    this._release();
    if (ws) closeQuietly(ws, code, reason);
  }

  _release() {
    const ws = this._ws;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = noop;
    }
    this._ws = null;
  }
}

const SSE_BATCH = 16; // client frames per POST at most (section 10.1 takes a JSON array)
const SSE_GRACE_MS = 2000; // after a failed POST, how long the stream may take to end by itself

const parseJson = (text) => {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
};

/**
 * Server-Sent Events (section 10.1): an EventSource on GET <url>?frames=<the first frames>; its first
 * `stream` event names the POST path, `message` events are server frames, `close` gives {code, reason}.
 * Later client frames go up by POST, one request at a time (so they arrive in order), queued frames
 * batched into one JSON array. The EventSource never reconnects by itself: its frames held a
 * single-use token, so any error ends the transport and the client reconnects (resume + since).
 */
class SseTransport extends Transport {
  constructor(env) {
    super();
    this._EventSource = env.EventSource;
    this._fetch = env.fetch;
    this._timers = env.timers;
    this._random = env.random;
    this._es = null;
    this._post = null; // absolute URL of POST /sse/<stream>, once the stream is open: a secret, never logged
    this._queue = [];
    this._busy = false; // a POST is in flight
    this._batch = SSE_BATCH;
    this._retries = 0;
    this._gone = false; // a POST failed: send nothing more, wait for the stream to end
    this._ended = false;
    this._timer = null;
  }

  open(url, frames) {
    const u = new URL(url);
    u.searchParams.set("frames", JSON.stringify(frames));
    const es = new this._EventSource(u.href);
    this._es = es;
    es.addEventListener("stream", (e) => {
      const info = parseJson(e.data);
      if (!info || typeof info.post !== "string") {
        this._fire("error", new Error("unreadable `stream` event"));
        return this._end(1006, "unreadable stream event");
      }
      this._post = new URL(info.post, u).href;
      this._fire("open");
      this._flush();
    });
    es.addEventListener("message", (e) => this._fire("frame", e.data));
    es.addEventListener("close", (e) => {
      const c = parseJson(e.data) || {};
      this._end(Number.isInteger(c.code) ? c.code : 1006, typeof c.reason === "string" ? c.reason : "");
    });
    // The request failed (refused, not an event stream) or the stream broke: EventSource would now
    // reconnect by itself with the same frames, so close it and report a lost link.
    es.addEventListener("error", (e) => {
      if (this._ended) return;
      this._fire("error", e);
      this._end(1006, "");
    });
  }

  send(frame) {
    if (this._ended || this._gone) return false;
    this._queue.push(frame);
    // Frames sent in one tick (e.g. the subscribes after `connected`) go in one POST.
    if (this._queue.length === 1) queueMicrotask(() => this._flush());
    return true;
  }

  close() {
    this.off();
    this._finish();
  }

  _finish() {
    this._ended = true;
    this._queue = [];
    if (this._timer !== null) this._timers.clearTimeout(this._timer);
    this._timer = null;
    if (this._es) this._es.close();
  }

  _end(code, reason) {
    if (this._ended) return;
    this._finish();
    this._fire("close", code, reason);
  }

  _flush() {
    if (this._busy || this._ended || this._gone || this._post === null || this._timer !== null || this._queue.length === 0) return;
    const batch = this._queue.splice(0, this._batch);
    this._busy = true;
    const fetch = this._fetch; // called unbound: window.fetch refuses another `this`
    const init = { method: "POST", headers: { "Content-Type": "text/plain;charset=UTF-8" }, body: JSON.stringify(batch.length === 1 ? batch[0] : batch) };
    Promise.resolve()
      .then(() => fetch(this._post, init))
      .then(
        (res) => this._posted(batch, res.status, null),
        (err) => this._posted(batch, 0, err),
      );
  }

  _posted(batch, status, err) {
    this._busy = false;
    if (this._ended) return;
    if (status >= 200 && status < 300) {
      this._retries = 0;
      return this._flush();
    }
    if (status === 429 || (status === 413 && batch.length > 1)) {
      // 429: too many posted frames wait on the connection, none of these was taken; 413: the batch
      // is over the gateway's limits.max_frame_bytes. Again in smaller batches (429: a bit later).
      this._queue.unshift(...batch);
      this._batch = Math.max(1, Math.floor(batch.length / 2));
      if (status === 413) return this._flush();
      this._timer = this._timers.setTimeout(() => {
        this._timer = null;
        this._flush();
      }, backoffDelay(this._retries++, this._random, 50, 2000));
      return;
    }
    // One frame over limits.max_frame_bytes: a WebSocket would be closed with 1009 for it.
    if (status === 413) return this._end(1009, "frame too big");
    // 404 (the stream is closed, or this is another node) or no answer: the stream ends as well, and its
    // `close` event says why; if it does not within a grace period, the link is lost.
    this._gone = true;
    this._queue = [];
    this._fire("error", err || new Error(`POST answered HTTP ${status}`));
    this._timer = this._timers.setTimeout(() => {
      this._timer = null;
      this._end(1006, "stream lost");
    }, SSE_GRACE_MS);
  }
}

const TRANSPORTS = { websocket: WebSocketTransport, sse: SseTransport };

// ---- Recovery: what follows a lost connection (section 3, the same on every transport) ----

/**
 * Decides, the client acts. It holds the credentials (resume token from the last `connected`, the
 * unused connect token, getToken), the close-code rules, the reconnect backoff and the transport for
 * the next attempt. lost() and retry() answer a plan: {delay, sameUrl?} (reconnect after delay ms;
 * sameUrl: to the same gateway, with another transport) or {stop: state, error?}.
 *
 * Transports are tried in the order given: while none has worked yet, one that closes before it opened
 * gives way to the next at once (after the last one: backoff, then the first again). Once one opened,
 * the client keeps it for every reconnect: a gateway restart must not move a WebSocket client to SSE.
 */
class Recovery {
  constructor(options, transports, random, now) {
    this.transports = transports;
    this._index = 0;
    this._proven = false; // a transport opened: it stays
    this._random = random;
    this._now = now;
    this._minDelay = options.minDelay ?? 500;
    this._maxDelay = options.maxDelay ?? 20000;
    this._token = options.token || null;
    this._getToken = options.getToken || (options.tokenUrl ? fetchToken(options.tokenUrl, options.csrfToken) : null);
    // No `token` option at all: anonymous. `token: null` or "": the page could not get one (e.g. the
    // server could not mint it) and there is nothing to connect with.
    this._anonymous = options.token === undefined && !this._getToken;
    this.noToken = !this._token && !this._getToken && !this._anonymous;
    this.attempt = 0;
    this._limited = 0; // consecutive 4029 closes
    this._authFailures = 0;
    this._refetchedAfterRevoke = false;
    this._resume = null;
    this._resumeExpiresAt = 0;
    this._sent = null; // the credential sent on the current connection
  }

  /** The transport for the next connection. */
  get transport() {
    return this.transports[this._index];
  }

  /** connect() was called. */
  start() {
    this.attempt = 0;
    this._authFailures = 0;
  }

  // The credential for the next connect: resume > unused connect token > getToken > anonymous; null
  // when there is none (possibly as a promise).
  credential() {
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

  /** `cred` goes out in the connect frame of a new connection. */
  sending(cred) {
    this._sent = cred;
  }

  /** The transport opened: it works on this network. */
  opened() {
    this._proven = true;
  }

  /** The gateway accepted the connect. */
  connected(frame) {
    if (typeof frame.resume === "string") {
      this._resume = frame.resume;
      this._resumeExpiresAt = this._now() + (Number(frame.resume_expires_in) || 0) * 1000;
    }
    this._token = null; // connect tokens are single use
    this._refetchedAfterRevoke = false;
    this.attempt = 0;
    this._authFailures = 0;
  }

  /** The connection ended with close `code`; `opened`: its transport had opened. */
  lost(code, opened) {
    if (!opened && !this._proven && this.transports.length > 1) {
      this._index = (this._index + 1) % this.transports.length;
      if (this._index !== 0) return { ...this._next(true), sameUrl: true }; // not tried yet: at once, same gateway
    }
    if (code === 4001) return this._unauthorized();
    if (code === 4003 && this._getToken && !this._refetchedAfterRevoke) return this._revoked();
    const stop = STOPPING_CLOSES[code];
    if (stop) return { stop: "disconnected", error: new TelegraphyError(stop[0], stop[1], { closeCode: code }) };
    // 4029 (rate limited, over a quota): retry later, waiting longer after each consecutive one, though
    // `connected` in between resets the ordinary backoff.
    this._limited = code === 4029 ? this._limited + 1 : 0;
    const notBefore = this._limited ? Math.min(this._maxDelay, this._minDelay * 2 ** Math.min(this._limited, 16)) : 0;
    return this._next(code === 1012 && this.attempt === 0, notBefore); // 1012: at once, the first time
  }

  /** A step before the connection failed (getToken, the url function); notBefore: e.g. a Retry-After. */
  retry(notBefore) {
    return this._next(false, notBefore);
  }

  _unauthorized() {
    const sent = this._sent || {};
    if (sent.resume) this._resume = null;
    if (sent.token) {
      this._token = null;
      this._authFailures++;
    }
    const canRetry = this._resume || this._token || (this._getToken && this._authFailures < MAX_AUTH_FAILURES);
    if (!canRetry) return { stop: "unauthorized" };
    return this._next(Boolean(sent.resume)); // an expired resume: fetch a token at once
  }

  // Revoked (4003) with a way to get tokens: the backend decides whether this user still gets one (e.g. a
  // changed `allow`, or a logout on another device); 401/403 from it stops the client. Once per connection.
  _revoked() {
    this._resume = null;
    this._token = null;
    this._refetchedAfterRevoke = true;
    return this._next(true);
  }

  /** The reconnect delay for attempt number `attempt` (also used for retries of a subscribe). */
  backoff(attempt) {
    return backoffDelay(attempt, this._random, this._minDelay, this._maxDelay);
  }

  // notBefore (ms): a floor for the delay.
  _next(immediate, notBefore = 0) {
    const backoff = immediate ? 0 : this.backoff(this.attempt);
    this.attempt++;
    return { delay: Math.max(backoff, notBefore) };
  }
}

// ---- Subscriptions (sections 7 and 8): entries, handles, and the registry ----

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

class Subscription {
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

/**
 * The page's subscriptions on the gateway (sections 7 and 8): the entries by name, the requests
 * waiting for an answer, the frames that subscribe and unsubscribe, event routing and each
 * subscription's stream position. It knows nothing of sockets: `host` gives it send(frame) (false when
 * nothing can be sent), live() (`connected` received on the current connection), id(), emit(type,
 * info), error(err), call(fn, arg), setTimeout/clearTimeout and retryDelay(attempt).
 */
class Subscriptions {
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
   * many as fit in `maxChars` of JSON, at most `maxCount`. The others follow `connected`.
   */
  openingFrames(maxChars, maxCount) {
    const frames = [];
    let chars = 0;
    for (const entry of this._entries.values()) {
      if (frames.length >= maxCount) break;
      chars += JSON.stringify(this._subscribeFrame(entry, 0)).length + 1;
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

  _onAnswer(frame) {
    const p = this._pending.get(frame.id);
    if (!p?.ask || p.ask.type !== frame.type) return;
    this._pending.delete(frame.id);
    if (frame.type === "presence") {
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

// ---- Client: the connection (handshake, heartbeat, timeouts) wiring the units above ----

const TRANSPORT_NAMES = Object.keys(TRANSPORTS);
// SSE sends the first subscribes with the connect, in the URL: at most this much JSON (URLs over
// ~8 KB are refused by common proxies) and this many frames; the others are POSTed after `connected`.
const SSE_OPENING_CHARS = 4096;
const SSE_OPENING_SUBSCRIBES = 16;

// The transports to use, in order: `options.transports` without those this environment lacks.
function usableTransports(options, env) {
  const wanted = options.transports ?? TRANSPORT_NAMES;
  if (!Array.isArray(wanted) || wanted.length === 0 || new Set(wanted).size !== wanted.length || !wanted.every((t) => TRANSPORT_NAMES.includes(t))) {
    throw new TypeError(`Telegraphy: transports must be a list of distinct names out of ${JSON.stringify(TRANSPORT_NAMES)}`);
  }
  const usable = wanted.filter((t) => (t === "websocket" ? typeof env.WebSocket === "function" : typeof env.EventSource === "function" && typeof env.fetch === "function"));
  if (usable.length === 0) {
    throw new TypeError(
      wanted.includes("websocket")
        ? "Telegraphy: no WebSocket implementation; pass options.WebSocket"
        : "Telegraphy: no EventSource or fetch implementation; pass options.EventSource and options.fetch",
    );
  }
  return usable;
}

let pageInstance = null;

class Telegraphy {
  /**
   * options: url (ws:, wss:, http(s): or relative; or a list of them, tried in turn from a random
   * start; or a function returning the next one, possibly as a promise), token (single-use connect
   * token; absent = anonymous, null or "" = none could be had: state "disconnected", error
   * "no_token"), getToken (async () => new token | null), tokenUrl (POST -> {"token": ...}, used when
   * getToken is absent), csrfToken (sent to tokenUrl as X-CSRFToken; default: the csrftoken cookie),
   * transports (default ["websocket", "sse"]: the first that opens is kept), sseUrl (default: derived
   * from the url, .../ws -> .../sse), WebSocket, EventSource, fetch (implementations), autoConnect
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
    this._env = {
      WebSocket: options.WebSocket || globalThis.WebSocket,
      EventSource: options.EventSource || globalThis.EventSource,
      fetch: options.fetch || globalThis.fetch,
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
    return sse ? absolute(sse).replace(/^ws(s?):/i, "http$1:") : toSseUrl(url);
  }

  async _open() {
    const gen = ++this._gen;
    const got = await this._step(gen, () => this._recovery.credential(), "token", "getToken failed");
    if (!got) return;
    const cred = got.value;
    if (cred === null && this._recovery.noToken) {
      return this._stop("disconnected", new TelegraphyError("no_token", "no token to connect with (the page got none)"));
    }
    if (cred === null) return this._stop("unauthorized");
    const next = await this._step(gen, () => this._nextUrl(), "bad_url", "the url function failed");
    if (!next) return;
    const url = next.value;
    const name = this._recovery.transport;
    this.url = url;
    this.transport = name;
    this._opened++;
    const conn = new TRANSPORTS[name](this._env);
    const connect = { type: "connect", id: this._nextId++, ...cred };
    const frames = [connect];
    if (name === "sse") {
      const room = SSE_OPENING_CHARS - JSON.stringify(connect).length;
      frames.push(...this._subs.openingFrames(room, SSE_OPENING_SUBSCRIBES));
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
    this._subs.receive(frame);
  }

  _onConnected(frame) {
    this._clear("_connectTimer");
    this.session = frame.session ?? null;
    this.node = frame.node ?? null;
    this._recovery.connected(frame);
    this._heartbeatMs = (frame.heartbeat > 0 ? frame.heartbeat : 25) * 1000;
    this._live = true;
    this._alive();
    this._subs.connected();
    this._setState("connected");
  }
}

Telegraphy.validateName = validateName;
Telegraphy.validatePattern = validatePattern;
Telegraphy.matches = matches;
Telegraphy.contains = contains;
Telegraphy.encodeKey = encodeKey;
Telegraphy.decodeKey = decodeKey;
Telegraphy.backoffDelay = backoffDelay;
Telegraphy.validateSubName = validateSubName;
Telegraphy.checkConditions = checkConditions;
Telegraphy.Subscription = Subscription;
Telegraphy.TelegraphyError = TelegraphyError;
  global.Telegraphy = Telegraphy;
})(typeof globalThis !== "undefined" ? globalThis : this);
