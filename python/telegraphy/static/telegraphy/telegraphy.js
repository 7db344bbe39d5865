/* telegraphy-client: bundled from src/ by build.mjs (esbuild); do not edit. */
(() => {
  // src/constants.js
  var PROTOCOL = Object.freeze({
    "names": Object.freeze({
      "max_tokens": 16,
      "max_bytes": 255,
      "token_chars": "A-Za-z0-9_-",
      "single_wildcard": "*",
      "tail_wildcard": ">",
      "max_plain_key_chars": 64
    }),
    "sub_names": Object.freeze({
      "min_chars": 1,
      "max_chars": 64,
      "chars": "A-Za-z0-9_.:*>-"
    }),
    "filters": Object.freeze({
      "lookups": Object.freeze([
        "exact",
        "iexact",
        "contains",
        "icontains",
        "in",
        "gt",
        "gte",
        "lt",
        "lte",
        "range",
        "startswith",
        "istartswith",
        "endswith",
        "iendswith",
        "isnull",
        "regex",
        "iregex"
      ]),
      "default_lookup": "exact",
      "limits": Object.freeze({
        "max_conditions": Object.freeze({
          "default": 16,
          "gateway_setting": "limits.max_filter_conditions"
        }),
        "max_regex_conditions": Object.freeze({
          "default": 4,
          "gateway_setting": "limits.max_regex_conditions"
        }),
        "max_bytes": Object.freeze({
          "default": 4096
        }),
        "max_in_values": Object.freeze({
          "default": 100
        }),
        "max_regex_bytes": Object.freeze({
          "default": 256
        }),
        "max_regex_program_bytes": Object.freeze({
          "default": 262144
        })
      })
    }),
    "limits": Object.freeze({
      "max_event_bytes": Object.freeze({
        "default": 1048576,
        "gateway_setting": "limits.max_event_bytes"
      })
    }),
    "tokens": Object.freeze({
      "connect_prefix": "tg1",
      "resume_prefix": "tg1r",
      "max_bytes": 4096,
      "max_allow": 64,
      "jti_hex_chars": 32,
      "clock_skew": 5,
      "max_ttl": 3600,
      "min_secret_bytes": 32,
      "max_info_bytes": 256
    }),
    "buckets": Object.freeze({
      "tokens": Object.freeze({
        "name": "telegraphy_tokens",
        "max_age": 3600,
        "gateway_setting": "auth.tokens_bucket"
      }),
      "revocations": Object.freeze({
        "name": "telegraphy_revocations",
        "max_age": 86400,
        "gateway_setting": "auth.revocations_bucket"
      })
    }),
    "presence": Object.freeze({
      "bucket": Object.freeze({
        "name": "telegraphy_presence",
        "gateway_setting": "presence.bucket"
      }),
      "ttl_refresh_intervals": 3,
      "snapshot_cost": 5,
      "client_id_chars": 16
    }),
    "catalog": Object.freeze({
      "bucket": Object.freeze({
        "name": "telegraphy_catalog",
        "gateway_setting": "catalog.bucket"
      }),
      "format": 1,
      "max_entry_bytes": 65536,
      "max_patterns": 32,
      "max_description_chars": 4096,
      "mode": Object.freeze({
        "default": "open",
        "gateway_setting": "catalog.mode"
      }),
      "modes": Object.freeze([
        "off",
        "open",
        "strict"
      ]),
      "max_entries": Object.freeze({
        "default": 1e4,
        "gateway_setting": "catalog.max_entries"
      }),
      "max_reply_bytes": Object.freeze({
        "default": 262144,
        "gateway_setting": "catalog.max_reply_bytes"
      })
    }),
    "error_codes": Object.freeze([
      "bad_request",
      "unauthorized",
      "forbidden",
      "not_connected",
      "limit_exceeded",
      "internal",
      "unavailable",
      "timeout",
      "unknown_event"
    ]),
    "actions": Object.freeze({
      "grant_claims": Object.freeze([
        "publish",
        "publish_ephemeral",
        "rpc"
      ]),
      "max_grant_patterns": 64,
      "rpc_suffix": "_rpc",
      "lifecycle_suffix": "_lifecycle",
      "queue_group": "telegraphy_workers",
      "headers": Object.freeze({
        "client": "Telegraphy-Client",
        "user": "Telegraphy-User",
        "session": "Telegraphy-Session",
        "info": "Telegraphy-Info",
        "node": "Telegraphy-Node"
      }),
      "rpc_error_code_chars": "a-z0-9_",
      "rpc_error_code_max_chars": 64,
      "rpc_error_message_max_bytes": 256,
      "lifecycle_kinds": Object.freeze([
        "connect",
        "disconnect",
        "subscribe",
        "unsubscribe"
      ]),
      "limits": Object.freeze({
        "rpc_timeout": Object.freeze({
          "default": 5,
          "gateway_setting": "rpc.timeout"
        }),
        "rpc_max_in_flight": Object.freeze({
          "default": 4,
          "gateway_setting": "rpc.max_in_flight"
        }),
        "rpc_max_request_bytes": Object.freeze({
          "default": 16384,
          "gateway_setting": "rpc.max_request_bytes"
        }),
        "rpc_max_reply_bytes": Object.freeze({
          "default": 65536,
          "gateway_setting": "rpc.max_reply_bytes"
        }),
        "rpc_requests_per_second": Object.freeze({
          "default": 5,
          "gateway_setting": "rpc.requests_per_second"
        }),
        "rpc_request_burst": Object.freeze({
          "default": 20,
          "gateway_setting": "rpc.request_burst"
        }),
        "publish_max_bytes": Object.freeze({
          "default": 4096,
          "gateway_setting": "client_publish.max_bytes"
        }),
        "publish_requests_per_second": Object.freeze({
          "default": 10,
          "gateway_setting": "client_publish.requests_per_second"
        }),
        "publish_request_burst": Object.freeze({
          "default": 20,
          "gateway_setting": "client_publish.request_burst"
        })
      })
    }),
    "close_codes": Object.freeze({
      "normal": Object.freeze({
        "code": 1e3,
        "client": "reconnect"
      }),
      "protocol_violation": Object.freeze({
        "code": 1008,
        "client": "stop"
      }),
      "frame_too_big": Object.freeze({
        "code": 1009,
        "client": "stop"
      }),
      "restart": Object.freeze({
        "code": 1012,
        "client": "reconnect_at_once"
      }),
      "try_again_later": Object.freeze({
        "code": 1013,
        "client": "reconnect"
      }),
      "unauthorized": Object.freeze({
        "code": 4001,
        "client": "new_token"
      }),
      "forbidden": Object.freeze({
        "code": 4003,
        "client": "stop"
      }),
      "too_slow": Object.freeze({
        "code": 4008,
        "client": "reconnect"
      }),
      "rate_limited": Object.freeze({
        "code": 4029,
        "client": "reconnect"
      })
    })
  });

  // src/names.js
  var { max_tokens: MAX_TOKENS, max_bytes: MAX_BYTES, token_chars, single_wildcard: ANY, tail_wildcard: TAIL, max_plain_key_chars } = PROTOCOL.names;
  var TOKEN = new RegExp(`^[${token_chars}]+$`);
  function wellFormed(text, wildcards) {
    if (typeof text !== "string" || text.length === 0 || text.length > MAX_BYTES) return false;
    const tokens = text.split(".");
    if (tokens.length > MAX_TOKENS) return false;
    const last = tokens.length - 1;
    for (let i = 0; i <= last; i++) {
      const t = tokens[i];
      if (wildcards && (t === ANY || t === TAIL && i === last)) continue;
      if (!TOKEN.test(t)) return false;
    }
    return true;
  }
  function validateName(name) {
    return wellFormed(name, false);
  }
  function validatePattern(pattern) {
    return wellFormed(pattern, true);
  }
  function matches(pattern, name) {
    const p = pattern.split(".");
    const n = name.split(".");
    for (let i = 0; i < p.length; i++) {
      if (p[i] === TAIL) return n.length > i;
      if (i >= n.length) return false;
      if (p[i] !== ANY && p[i] !== n[i]) return false;
    }
    return p.length === n.length;
  }
  function contains(outer, inner) {
    const a = outer.split(".");
    const b = inner.split(".");
    for (let i = 0; i < b.length; i++) {
      if (i >= a.length) return false;
      if (a[i] === TAIL) return true;
      if (b[i] === TAIL) return false;
      if (a[i] !== ANY && a[i] !== b[i]) return false;
    }
    return a.length === b.length;
  }
  var PLAIN_KEY = new RegExp(`^(?!-)[${token_chars}]{1,${max_plain_key_chars}}$`);
  function encodeKey(pk) {
    const text = String(pk);
    if (PLAIN_KEY.test(text)) return text;
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
    return "-" + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function decodeKey(token) {
    if (!token.startsWith("-")) return token;
    const binary = atob(token.slice(1).replace(/-/g, "+").replace(/_/g, "/"));
    const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  }
  var ACTIONS = { created: "created", updated: "updated", deleted: "deleted" };
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
  var { chars: SUB_CHARS, min_chars: SUB_MIN, max_chars: SUB_MAX } = PROTOCOL.sub_names;
  var SUB_NAME = new RegExp(`^[${SUB_CHARS}]{${SUB_MIN},${SUB_MAX}}$`);
  function validateSubName(name) {
    return typeof name === "string" && SUB_NAME.test(name);
  }

  // src/filters.js
  var isText = (v) => typeof v === "string";
  var isOrdered = (v) => typeof v === "string" || Number.isFinite(v);
  var ANY2 = [() => true, ""];
  var TEXT = [isText, "a string"];
  var ORDERED = [isOrdered, "a number or a string"];
  var SHAPES = {
    exact: ANY2,
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
    iregex: TEXT
  };
  var LOOKUPS = new Set(PROTOCOL.filters.lookups);
  var DEFAULT_LOOKUP = PROTOCOL.filters.default_lookup;
  var LIMITS = PROTOCOL.filters.limits;
  var MAX_IN_VALUES = LIMITS.max_in_values.default;
  var MAX_REGEX_BYTES = LIMITS.max_regex_bytes.default;
  var MAX_BYTES2 = LIMITS.max_bytes.default;
  var REGEX = /* @__PURE__ */ new Set(["regex", "iregex"]);
  var utf8Length = (text) => new TextEncoder().encode(text).length;
  var jsonBytes = (value) => value === null || value === void 0 ? 0 : utf8Length(JSON.stringify(value));
  var shapeOf = (lookup) => Object.prototype.hasOwnProperty.call(SHAPES, lookup) ? SHAPES[lookup] : ANY2;
  function checkConditions(conditions, what = "filter") {
    if (conditions === void 0 || conditions === null) return null;
    if (typeof conditions !== "object" || Array.isArray(conditions)) {
      throw new TypeError(`Telegraphy: ${what} must be an object of "field__lookup": value`);
    }
    const keys = Object.keys(conditions);
    for (const key of keys) {
      const value = conditions[key];
      if (key === "" || key.split("__").some((part) => part === "")) {
        throw new TypeError(`Telegraphy: ${what} key ${JSON.stringify(key)} has an empty field`);
      }
      if (value === void 0 || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
        throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs a JSON value`);
      }
      const last = key.slice(key.lastIndexOf("__") + 2);
      const lookup = key.includes("__") && LOOKUPS.has(last) ? last : DEFAULT_LOOKUP;
      const shape = shapeOf(lookup);
      if (!shape[0](value)) throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs ${shape[1]}`);
      if (lookup === "in" && value.length > MAX_IN_VALUES) {
        throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} has more than ${MAX_IN_VALUES} values`);
      }
      if (REGEX.has(lookup) && utf8Length(value) > MAX_REGEX_BYTES) {
        throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} is a regex over ${MAX_REGEX_BYTES} bytes`);
      }
    }
    if (keys.length) checkSize({ [what]: conditions });
    return keys.length ? conditions : null;
  }
  function checkSize(spec) {
    if (jsonBytes(spec.filter) + jsonBytes(spec.exclude) > MAX_BYTES2) {
      throw new TypeError(`Telegraphy: filter and exclude are over ${MAX_BYTES2} bytes of JSON`);
    }
  }
  function canonical(value) {
    if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
    if (value && typeof value === "object") {
      return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
    }
    return JSON.stringify(value);
  }

  // src/backoff.js
  function backoffDelay(attempt, random = Math.random, min = 500, max = 2e4) {
    const span = Math.min(max, min * 2 ** Math.min(attempt, 31));
    return Math.min(max, min + Math.floor(random() * span));
  }

  // src/errors.js
  var TelegraphyError = class extends Error {
    constructor(code, message, details = {}) {
      super(message, details.cause ? { cause: details.cause } : void 0);
      this.name = "TelegraphyError";
      this.code = code;
      for (const k of ["id", "event", "closeCode"]) if (details[k] !== void 0) this[k] = details[k];
    }
  };

  // src/actions.js
  var RpcError = class extends TelegraphyError {
    constructor(code, message, details = {}) {
      super(code, message, details);
      this.name = "RpcError";
    }
  };
  var DEFAULT_TIMEOUT_MS = 65e3;
  var Actions = class {
    // host: {send(frame) -> bool, live() -> bool, id() -> number, setTimeout, clearTimeout}
    constructor(host) {
      this._host = host;
      this._pending = /* @__PURE__ */ new Map();
      this._abandoned = /* @__PURE__ */ new Set();
    }
    publish(name, data) {
      if (typeof name !== "string" || name === "") return Promise.reject(new TypeError("Telegraphy: publish needs an event name"));
      return this._request("publish", { type: "publish", event: name, data: data === void 0 ? null : data }, null);
    }
    rpc(method, data, options = {}) {
      if (typeof method !== "string" || method === "") return Promise.reject(new TypeError("Telegraphy: rpc needs a method name"));
      const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
      if (!(timeout > 0)) return Promise.reject(new TypeError("Telegraphy: rpc timeout must be a positive number of ms"));
      return this._request("rpc", { type: "rpc", method, data: data === void 0 ? null : data }, timeout);
    }
    _request(kind, frame, timeout) {
      if (!this._host.live()) return Promise.reject(new RpcError("disconnected", "not connected"));
      const id = this._host.id();
      return new Promise((resolve, reject) => {
        const entry = { kind, resolve, reject, timer: null };
        this._pending.set(id, entry);
        if (timeout !== null) {
          entry.timer = this._host.setTimeout(() => {
            this._abandoned.add(id);
            this._settle(id, new RpcError("timeout", "no answer in time", { id }));
          }, timeout);
        }
        if (!this._host.send({ ...frame, id })) this._settle(id, new RpcError("disconnected", "not connected", { id }));
      });
    }
    // Settles request `id` with `error`, or with `value` when error is null.
    _settle(id, error, value) {
      const entry = this._pending.get(id);
      if (!entry) return;
      this._pending.delete(id);
      if (entry.timer !== null) this._host.clearTimeout(entry.timer);
      if (error) entry.reject(error);
      else entry.resolve(value);
    }
    // A frame from the gateway: true when it answered one of our requests.
    receive(frame) {
      if (typeof frame.id !== "number") return false;
      if (this._abandoned.delete(frame.id)) return frame.type === "rpc_result" || frame.type === "error";
      if (!this._pending.has(frame.id)) return false;
      const kind = this._pending.get(frame.id).kind;
      if (frame.type === "published" && kind === "publish") this._settle(frame.id, null, void 0);
      else if (frame.type === "rpc_result" && kind === "rpc") this._settle(frame.id, null, frame.data);
      else if (frame.type === "error") this._settle(frame.id, new RpcError(String(frame.code), String(frame.message ?? ""), { id: frame.id }));
      else return false;
      return true;
    }
    // The connection ended: every request still waiting rejects (never resent).
    lost() {
      this._abandoned.clear();
      for (const id of [...this._pending.keys()]) this._settle(id, new RpcError("disconnected", "the connection ended before the answer", { id }));
    }
  };

  // src/subscription.js
  var Subscription = class {
    constructor(owner, entry, handler, options) {
      this._owner = owner;
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
      return this.ready().then(() => this._closed ? Promise.reject(new TelegraphyError("closed", "subscription closed")) : this._owner._ask(this._entry, type));
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
      if (filters === void 0 || filters === null) filters = {};
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
      if (frame.from) event.from = frame.from;
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
  };

  // src/urls.js
  function absolute(url) {
    const u = String(url);
    return typeof location !== "undefined" && location.href ? new URL(u, location.href).href : u;
  }
  function toWebSocketUrl(url) {
    return absolute(url).replace(/^http(s?):/i, "ws$1:");
  }
  function toHttpUrl(url) {
    return absolute(url).replace(/^ws(s?):/i, "http$1:");
  }
  function toSseUrl(wsUrl) {
    const u = new URL(toHttpUrl(wsUrl));
    u.pathname = u.pathname.endsWith("/ws") ? u.pathname.slice(0, -2) + "sse" : u.pathname.replace(/\/?$/, "/sse");
    u.hash = "";
    return u.href;
  }

  // src/transport.js
  var Transport = class {
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
  };
  var noop = () => {
  };
  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  // src/websocket.js
  function closeQuietly(ws, code, reason) {
    try {
      ws.close(code, reason);
    } catch {
    }
  }
  var WebSocketTransport = class extends Transport {
    /** env: {WebSocket}. */
    static usable(env) {
      return typeof env.WebSocket === "function";
    }
    constructor(env) {
      super();
      this._WebSocket = env.WebSocket;
      this._ws = null;
    }
    open(url, frames) {
      const ws = new this._WebSocket(url);
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
  };

  // src/sse-parser.js
  var MAX_MESSAGE_CHARS = 16 * 1024 * 1024;
  var SseParser = class {
    /** onMessage({event, data, id}): event is "message" when the message names none. */
    constructor(onMessage, maxChars = MAX_MESSAGE_CHARS) {
      this._onMessage = onMessage;
      this._maxChars = maxChars;
      this._size = 0;
      this._buffer = "";
      this._start = true;
      this._afterCr = false;
      this._event = "";
      this._data = [];
      this._id = "";
    }
    /** Feed decoded text. */
    push(text) {
      if (this._start && text.length > 0) {
        this._start = false;
        if (text.charCodeAt(0) === 65279) text = text.slice(1);
      }
      if (this._afterCr && text.startsWith("\n")) text = text.slice(1);
      this._afterCr = false;
      let buffer = this._buffer + text;
      for (; ; ) {
        const end = buffer.search(/[\r\n]/);
        if (end < 0) break;
        if (buffer[end] === "\r" && end === buffer.length - 1) {
          this._afterCr = true;
          this._line(buffer.slice(0, end));
          buffer = "";
          break;
        }
        this._line(buffer.slice(0, end));
        buffer = buffer.slice(end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1));
      }
      this._buffer = buffer;
      if (this._size + buffer.length > this._maxChars) throw new RangeError(`an SSE message over ${this._maxChars} characters`);
    }
    _line(line) {
      if (line === "") return this._dispatch();
      if (line.startsWith(":")) return;
      this._size += line.length + 1;
      if (this._size > this._maxChars) throw new RangeError(`an SSE message over ${this._maxChars} characters`);
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") this._event = value;
      else if (field === "data") this._data.push(value);
      else if (field === "id" && !value.includes("\0")) this._id = value;
    }
    _dispatch() {
      const data = this._data;
      const event = this._event || "message";
      this._data = [];
      this._event = "";
      this._size = 0;
      if (data.length === 0) return;
      this._onMessage({ event, data: data.join("\n"), id: this._id });
    }
  };

  // src/sse.js
  var FRAMES_HEADER = "X-Telegraphy-Frames";
  var SSE_BATCH = 16;
  var SSE_GRACE_MS = 2e3;
  var RESUME_TOKEN = `${PROTOCOL.tokens.resume_prefix}.`;
  function asciiJson(value) {
    return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  }
  var streams = (env) => typeof env.fetch === "function" && typeof env.ReadableStream === "function";
  var holdsResume = (frame) => frame.resume !== void 0 || typeof frame.token === "string" && frame.token.startsWith(RESUME_TOKEN);
  var SseTransport = class extends Transport {
    /** SSE works here: fetch for the POSTs, and a way to read the stream. */
    static usable(env) {
      return typeof env.fetch === "function" && (streams(env) || typeof env.EventSource === "function");
    }
    /** A connect here may carry a resume token: the opening frames go in a header (not with EventSource). */
    static resumable(env) {
      return streams(env);
    }
    constructor(env) {
      super();
      this._env = env;
      this._fetch = env.fetch;
      this._timers = env.timers;
      this._random = env.random;
      this._es = null;
      this._abort = null;
      this._base = null;
      this._post = null;
      this._queue = [];
      this._busy = false;
      this._batch = SSE_BATCH;
      this._retries = 0;
      this._gone = false;
      this._ended = false;
      this._timer = null;
    }
    open(url, frames) {
      this._base = new URL(url).href;
      if (streams(this._env)) this._openFetch(frames);
      else this._openEventSource(frames);
    }
    _openFetch(frames) {
      const fetch2 = this._fetch;
      const abort = new AbortController();
      this._abort = abort;
      const init = {
        method: "GET",
        headers: { Accept: "text/event-stream", [FRAMES_HEADER]: asciiJson(frames) },
        cache: "no-store",
        signal: abort.signal
      };
      Promise.resolve().then(() => fetch2(this._base, init)).then((res) => {
        if (this._ended) return;
        const type = res.headers && res.headers.get("Content-Type") || "";
        if (!res.ok || !/^text\/event-stream\b/i.test(type)) throw new Error(`the stream answered HTTP ${res.status} (${type || "no content type"})`);
        if (!res.body || typeof res.body.getReader !== "function") throw new Error("the stream's body cannot be read as it arrives");
        return this._read(res.body.getReader());
      }).catch((err) => this._broken(err));
    }
    async _read(reader) {
      const decoder = new TextDecoder();
      const parser = new SseParser((m) => this._message(m.event, m.data));
      for (; ; ) {
        const { done, value } = await reader.read();
        if (this._ended) return;
        if (done) break;
        parser.push(decoder.decode(value, { stream: true }));
        if (this._ended) return;
      }
      this._broken(new Error("the stream ended without a close event"));
    }
    // Fallback: an EventSource, the opening frames in the URL. They must not hold a resume token (the client
    // does not send one on this transport: `resumable`); this is the last check before a URL would log one.
    _openEventSource(frames) {
      if (frames.some(holdsResume)) throw new Error("SSE over EventSource puts its frames in the URL: refusing to send a resume token there");
      const u = new URL(this._base);
      u.searchParams.set("frames", JSON.stringify(frames));
      const es = new this._env.EventSource(u.href);
      this._es = es;
      for (const type of ["stream", "message", "close"]) es.addEventListener(type, (e) => this._message(type, e.data));
      es.addEventListener("error", (e) => this._broken(e));
    }
    // One message of the stream (section 10.1): `stream` first, server frames, `close` last.
    _message(event, data) {
      if (this._ended) return;
      if (event === "message") return this._fire("frame", data);
      if (event === "stream") {
        const info = parseJson(data);
        if (!info || typeof info.post !== "string") {
          this._fire("error", new Error("unreadable `stream` event"));
          return this._end(1006, "unreadable stream event");
        }
        this._post = new URL(info.post, this._base).href;
        this._fire("open");
        return this._flush();
      }
      if (event === "close") {
        const c = parseJson(data) || {};
        this._end(Number.isInteger(c.code) ? c.code : 1006, typeof c.reason === "string" ? c.reason : "");
      }
    }
    // The request failed or the stream broke: a lost link.
    _broken(err) {
      if (this._ended) return;
      this._fire("error", err);
      this._end(1006, "");
    }
    send(frame) {
      if (this._ended || this._gone) return false;
      this._queue.push(frame);
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
      if (this._abort) this._abort.abort();
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
      const fetch2 = this._fetch;
      const init = { method: "POST", headers: { "Content-Type": "text/plain;charset=UTF-8" }, body: JSON.stringify(batch.length === 1 ? batch[0] : batch) };
      Promise.resolve().then(() => fetch2(this._post, init)).then(
        (res) => this._posted(batch, res.status, null),
        (err) => this._posted(batch, 0, err)
      );
    }
    _posted(batch, status, err) {
      this._busy = false;
      if (this._ended) return;
      if (status >= 200 && status < 300) {
        this._retries = 0;
        return this._flush();
      }
      if (status === 429 || status === 413 && batch.length > 1) {
        this._queue.unshift(...batch);
        this._batch = Math.max(1, Math.floor(batch.length / 2));
        if (status === 413) return this._flush();
        this._timer = this._timers.setTimeout(() => {
          this._timer = null;
          this._flush();
        }, backoffDelay(this._retries++, this._random, 50, 2e3));
        return;
      }
      if (status === 413) return this._end(PROTOCOL.close_codes.frame_too_big.code, "frame too big");
      this._gone = true;
      this._queue = [];
      this._fire("error", err || new Error(`POST answered HTTP ${status}`));
      this._timer = this._timers.setTimeout(() => {
        this._timer = null;
        this._end(1006, "stream lost");
      }, SSE_GRACE_MS);
    }
  };

  // src/page.js
  function pageConfig() {
    const el = typeof document !== "undefined" && document.getElementById("telegraphy-config");
    if (!el) throw new Error('Telegraphy.fromPage: no <script id="telegraphy-config"> on the page');
    return JSON.parse(el.textContent);
  }
  function readCookie(name) {
    if (typeof document === "undefined" || typeof document.cookie !== "string") return "";
    for (const part of document.cookie.split(";")) {
      const eq = part.indexOf("=");
      if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
    }
    return "";
  }
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
        err.retryAfterMs = Number.isFinite(seconds) && seconds > 0 ? seconds * 1e3 : 0;
        throw err;
      }
      if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
      return (await res.json()).token || null;
    };
  }

  // src/recovery.js
  var CLOSES = new Map(Object.entries(PROTOCOL.close_codes).map(([name, { code, client }]) => [code, { name, client }]));
  var LOST = { name: "lost", client: "reconnect" };
  var STOP_ERRORS = { forbidden: ["revoked", "access forbidden or revoked"] };
  var MAX_AUTH_FAILURES = 3;
  var RESUME_MARGIN_MS = 5e3;
  var Recovery = class {
    constructor(options, transports, random, now) {
      this.transports = transports;
      this._index = 0;
      this._proven = false;
      this._random = random;
      this._now = now;
      this._minDelay = options.minDelay ?? 500;
      this._maxDelay = options.maxDelay ?? 2e4;
      this._token = options.token || null;
      this._getToken = options.getToken || (options.tokenUrl ? fetchToken(options.tokenUrl, options.csrfToken) : null);
      this._anonymous = options.token === void 0 && !this._getToken;
      this.noToken = !this._token && !this._getToken && !this._anonymous;
      this.attempt = 0;
      this._limited = 0;
      this._authFailures = 0;
      this._refetchedAfterRevoke = false;
      this._resume = null;
      this._resumeExpiresAt = 0;
      this._sent = null;
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
    /** A resume token is held (and not about to expire). */
    get resumable() {
      return Boolean(this._resume) && this._now() < this._resumeExpiresAt - RESUME_MARGIN_MS;
    }
    // The credential for the next connect: resume > unused connect token > getToken > anonymous; null
    // when there is none (possibly as a promise). `resume` false: the transport must not carry a resume
    // token (it would go in a URL), so a connect token (or anonymous) it is, and the resume is dropped.
    credential(resume = true) {
      if (resume && this.resumable) return { resume: this._resume };
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
        this._resumeExpiresAt = this._now() + (Number(frame.resume_expires_in) || 0) * 1e3;
      }
      this._token = null;
      this._refetchedAfterRevoke = false;
      this.attempt = 0;
      this._authFailures = 0;
    }
    /** The connection ended with close `code`; `opened`: its transport had opened. */
    lost(code, opened) {
      if (!opened && !this._proven && this.transports.length > 1) {
        this._index = (this._index + 1) % this.transports.length;
        if (this._index !== 0) return { ...this._next(true), sameUrl: true };
      }
      const rule = CLOSES.get(code) ?? LOST;
      if (rule.client === "new_token") return this._unauthorized();
      if (rule.name === "forbidden" && this._getToken && !this._refetchedAfterRevoke) return this._revoked();
      if (rule.client === "stop") {
        const [errorCode, text] = STOP_ERRORS[rule.name] ?? [rule.name, rule.name.replace(/_/g, " ")];
        return { stop: "disconnected", error: new TelegraphyError(errorCode, `the gateway closed the connection: ${text} (${code})`, { closeCode: code }) };
      }
      this._limited = rule.name === "rate_limited" ? this._limited + 1 : 0;
      const notBefore = this._limited ? Math.min(this._maxDelay, this._minDelay * 2 ** Math.min(this._limited, 16)) : 0;
      return this._next(rule.client === "reconnect_at_once" && this.attempt === 0, notBefore);
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
      const canRetry = this._resume || this._token || this._getToken && this._authFailures < MAX_AUTH_FAILURES;
      if (!canRetry) return { stop: "unauthorized" };
      return this._next(Boolean(sent.resume));
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
  };

  // src/subscriptions.js
  var Entry = class {
    constructor(key, pattern, spec, explicit, presence) {
      this.key = key;
      this.pattern = pattern;
      this.presence = presence;
      this.filter = spec.filter;
      this.exclude = spec.exclude;
      this.explicit = explicit;
      this.subs = /* @__PURE__ */ new Set();
      this.state = "pending";
      this.error = null;
      this.reqId = null;
      this.queued = false;
      this.sent = false;
      this.confirmed = false;
      this.recovering = false;
      this.paused = false;
      this.replaced = false;
      this.retries = 0;
      this.retryTimer = null;
      this.waiters = [];
      this.position = null;
      this.last = null;
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
      for (const w of waiters) (error ? w.reject : w.resolve)(error || void 0);
    }
  };
  var sameEpoch = (a, b) => a !== null && b !== null && a.epoch === b.epoch;
  function checkSince(since) {
    if (!since || typeof since.epoch !== "string" || since.epoch.length === 0 || since.epoch.length > 64 || !Number.isSafeInteger(since.seq) || since.seq < 0) {
      throw new TypeError(`Telegraphy: since must be {"epoch": string, "seq": integer >= 0} (a subscription's position)`);
    }
    return { epoch: since.epoch, seq: since.seq };
  }
  var Subscriptions = class {
    constructor(host) {
      this._host = host;
      this._entries = /* @__PURE__ */ new Map();
      this._pending = /* @__PURE__ */ new Map();
      this._names = 0;
      this._flushQueued = false;
      this._candidates = [];
    }
    /** Telegraphy.subscribe: see there. */
    subscribe(pattern, handler, options) {
      if (handler && typeof handler === "object") [handler, options] = [void 0, handler];
      options = options || {};
      if (!validatePattern(pattern)) throw new TypeError(`Telegraphy: invalid pattern ${JSON.stringify(pattern)}`);
      if (handler != null && typeof handler !== "function") throw new TypeError("Telegraphy: handler must be a function");
      const spec = { filter: checkConditions(options.filter, "filter"), exclude: checkConditions(options.exclude, "exclude") };
      checkSize(spec);
      const since = options.since == null ? null : checkSince(options.since);
      if (options.presence !== void 0 && typeof options.presence !== "boolean") throw new TypeError("Telegraphy: presence must be a boolean");
      const presence = options.presence === true;
      if (presence && !validateName(pattern)) throw new TypeError(`Telegraphy: presence needs a channel without wildcards, not ${JSON.stringify(pattern)}`);
      const name = options.name;
      let entry;
      if (name !== void 0) {
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
        entry.paused = false;
      }
      this._candidates = [];
      const pending = [...this._pending.values()];
      this._pending.clear();
      for (const p of pending) {
        if (p.resolve) p.resolve();
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
          truncated: frame.truncated === true
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
      const entry = typeof frame.sub === "string" ? this._entries.get(frame.sub) : void 0;
      if (!entry || !entry.presence) return;
      let arg;
      if (frame.type === "join" || frame.type === "leave") {
        if (typeof frame.client !== "string") return;
        arg = { client: frame.client, user: frame.user };
        if (frame.info !== void 0) arg.info = frame.info;
      } else {
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
        default:
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
      for (; ; ) {
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
        if (!this._host.live()) return;
        for (const e of this._entries.values()) if (e.queued) this._sendSubscribe(e);
      });
    }
    // New filters for a handle (Subscription.filter/exclude). A named subscription, or one this handle
    // holds alone, is replaced under its name (section 8); a shared one is left to the other handles.
    _respec(sub, spec) {
      checkSize(spec);
      const entry = sub._entry;
      const text = canonical(spec);
      if (text === entry.spec) return;
      const alone = entry.explicit || entry.subs.size === 1 && validateSubName(entry.key);
      const target = entry.explicit ? null : this._find(entry.pattern, text, entry.presence);
      if (!target && alone) {
        entry.filter = spec.filter;
        entry.exclude = spec.exclude;
        entry.state = "pending";
        entry.error = null;
        if (entry.reqId !== null) {
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
        const error = new TelegraphyError("unsupported", "the gateway does not support named or filtered subscriptions", {
          id: frame.id,
          event: entry.pattern
        });
        const plain = this._entries.get(entry.pattern);
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
        if (!sameEpoch(entry.last, since) || entry.last.seq < since.seq) entry.last = since;
        if (at && at.epoch === since.epoch && at.seq > since.seq) this._barrier(entry, at);
      } else if (since !== null || at && !sameEpoch(entry.position, at)) {
        entry.position = at;
        if (!sameEpoch(entry.last, at)) entry.last = null;
      } else if (at && at.seq > entry.position.seq) {
        this._barrier(entry, at);
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
      const p = frame.id != null ? this._pending.get(frame.id) : void 0;
      this._pending.delete(frame.id);
      if (p?.ask) {
        const code2 = typeof frame.code === "string" ? frame.code : "error";
        return p.ask.reject(new TelegraphyError(code2, frame.message || code2, { id: frame.id, event: p.ask.event }));
      }
      const code = typeof frame.code === "string" ? frame.code : "error";
      const error = new TelegraphyError(code, frame.message || code, { id: frame.id, event: p?.entry?.pattern });
      if (p?.resolve) p.resolve();
      const entry = this._current(p?.entry, frame.id);
      if (!entry) return this._host.error(error);
      if (code !== "internal") return this._refuse(entry, error);
      this._retrySubscribe(entry);
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
        entries = this._entries.values();
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
  };

  // src/version.js
  var VERSION = "0.1.0";

  // src/client.js
  var TRANSPORTS = { websocket: WebSocketTransport, sse: SseTransport };
  var TRANSPORT_NAMES = Object.keys(TRANSPORTS);
  var SSE_OPENING_CHARS = 4096;
  var SSE_OPENING_SUBSCRIBES = 16;
  function usableTransports(options, env) {
    const wanted = options.transports ?? TRANSPORT_NAMES;
    if (!Array.isArray(wanted) || wanted.length === 0 || new Set(wanted).size !== wanted.length || !wanted.every((t) => TRANSPORT_NAMES.includes(t))) {
      throw new TypeError(`Telegraphy: transports must be a list of distinct names out of ${JSON.stringify(TRANSPORT_NAMES)}`);
    }
    const usable = wanted.filter((t) => TRANSPORTS[t].usable(env));
    if (usable.length === 0) {
      throw new TypeError(
        wanted.includes("websocket") ? "Telegraphy: no WebSocket implementation; pass options.WebSocket" : "Telegraphy: no fetch (with ReadableStream, or else EventSource) implementation; pass options.fetch"
      );
    }
    return usable;
  }
  var pageInstance = null;
  var fromPage = (options) => new Telegraphy({ ...pageConfig(), ...options });
  var thePage = () => pageInstance ||= fromPage({});
  var Telegraphy = class {
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
      if (!url || Array.isArray(url) && url.length === 0) throw new TypeError("Telegraphy: options.url is required");
      const timers = options.timers || {};
      this._setTimeout = timers.setTimeout || ((fn, ms) => setTimeout(fn, ms));
      this._clearTimeout = timers.clearTimeout || ((handle) => clearTimeout(handle));
      this._random = options.random || Math.random;
      this._now = options.now || Date.now;
      const impl = (name) => options[name] === void 0 ? globalThis[name] : options[name];
      this._env = {
        WebSocket: impl("WebSocket"),
        EventSource: impl("EventSource"),
        fetch: impl("fetch"),
        ReadableStream: impl("ReadableStream"),
        timers: { setTimeout: this._setTimeout, clearTimeout: this._clearTimeout },
        random: this._random
      };
      this._recovery = new Recovery(options, usableTransports(options, this._env), this._random, this._now);
      this._connectTimeout = options.connectTimeout ?? 1e4;
      this._sseUrl = options.sseUrl ?? null;
      if (typeof url === "function") {
        this._urlSource = url;
        this.url = null;
      } else {
        this._urls = [].concat(url).map(toWebSocketUrl);
        this._urlIndex = Math.floor(this._random() * this._urls.length) % this._urls.length;
        this.url = this._urls[this._urlIndex];
      }
      this.state = "disconnected";
      this.session = null;
      this.client = null;
      this.node = null;
      this.transport = null;
      this._listeners = /* @__PURE__ */ new Map();
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
        retryDelay: (attempt) => this._recovery.backoff(attempt)
      });
      this._actions = new Actions({
        send: (frame) => this._send(frame),
        live: () => this._live,
        id: () => this._nextId++,
        setTimeout: this._setTimeout,
        clearTimeout: this._clearTimeout
      });
      this._conn = null;
      this._connOpened = false;
      this._live = false;
      this._gen = 0;
      this._opened = 0;
      this._sameUrl = false;
      this._stopped = true;
      this._timer = null;
      this._connectTimer = null;
      this._deadTimer = null;
      this._heartbeatMs = 0;
      this._auto = options.autoConnect !== false;
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
      if (!this._listeners.has(type)) this._listeners.set(type, /* @__PURE__ */ new Set());
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
      if (conn) conn.close(1e3, "client closed");
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
      if (event !== void 0 && !validatePattern(event)) {
        throw new TelegraphyError("bad_request", `invalid pattern ${JSON.stringify(event)}`, { event });
      }
      await this._whenLive();
      return this._subs.request("events", event === void 0 ? {} : { event });
    }
    // ---- internals ----
    // Resolves once `connected` (at once when it is); rejects "not_connected" when the client is stopped or
    // stops, or after connectTimeout.
    _whenLive() {
      if (this._live) return Promise.resolve();
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
      conn.on("error", noop);
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
          this._follow(this._recovery.retry(err && err.retryAfterMs || 0));
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
      conn.close(4e3, reason);
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
      this._heartbeatMs = (frame.heartbeat > 0 ? frame.heartbeat : 25) * 1e3;
      this._live = true;
      this._alive();
      this._subs.connected();
      this._setState("connected");
    }
  };

  // src/global.js
  globalThis.Telegraphy = Telegraphy;
})();
