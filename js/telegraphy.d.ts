// Type declarations for telegraphy-client (dist/telegraphy.mjs, built from src/). Protocol v1: proto/PROTOCOL.md.

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "disconnected" | "unauthorized";

export interface TelegraphyEvent<T = unknown> {
  /** The event name, e.g. "shop.order.created.42". */
  name: string;
  /** The JSON payload the publisher sent. */
  data: T;
  /** The name of the subscription that matched (the frame's `sub`): its pattern unless it was named or filtered. */
  sub: string;
  /** Who sent it, for an event a client published (PROTOCOL.md section 13.1); stamped by the gateway. */
  from?: EventSender;
}

/** The sender of a client publish: the token's `user` ("" = anonymous) and the connection's client id. */
export interface EventSender {
  user: string;
  /** Equal to `Telegraphy.client` on the connection that published it. */
  client: string;
}

/** Options of `rpc()`. */
export interface RpcOptions {
  /** Milliseconds to wait for the answer before rejecting with code "timeout" (default 65000; the gateway's own rpc.timeout answers first). */
  timeout?: number;
}

/** A stream position (PROTOCOL.md section 7): `seq` within the history stream's life `epoch`. */
export interface Position {
  epoch: string;
  seq: number;
}

/**
 * What a subscription learns after it was re-subscribed following a lost connection (or after a
 * subscribe with `since`). `recovered: true`: every missed event is delivered, once and in order,
 * right after this. `recovered: false`: events may have been missed (too many, aged out, another
 * history epoch, or no history): reload the data by other means.
 */
export interface RecoveryInfo {
  recovered: boolean;
  /** The position the subscription is live from, when the gateway gave one. */
  epoch: string | null;
  seq: number | null;
  /** The subscription's name and pattern. */
  sub: string;
  event: string;
}

/**
 * Django-style conditions evaluated by the gateway on each event's `data` (PROTOCOL.md section 8):
 * `{"customer__id": 7, "total__gte": 100, "status__in": ["new", "paid"]}`. All must hold (AND).
 */
export type Conditions = Record<string, unknown>;

/**
 * A model event, as given to onCreate/onUpdate/onDelete: the action and the key are the name's last two
 * tokens, `<app>.<model>.<created|updated|deleted>.<key>` or an app's own space such as
 * `demo.mine.<owner>.<action>.<key>`.
 */
export interface ModelEvent<T = unknown> extends TelegraphyEvent<T> {
  /** Django's app label and model name, for the standard four-token names; null otherwise. */
  app: string | null;
  model: string | null;
  /** The tokens before the action, e.g. "shop.order" or "demo.mine.7". */
  scope: string;
  action: "created" | "updated" | "deleted";
  /** str(pk) of the object (the name's key token, unescaped). */
  key: string;
}

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: { data: any }) => any) | null;
  onclose: ((ev: { code: number; reason: string }) => any) | null;
  onerror: ((ev: any) => any) | null;
}

/** How frames travel (PROTOCOL.md section 10): a WebSocket, or Server-Sent Events down + POST up. */
export type TransportName = "websocket" | "sse";

/** The part of EventSource the SSE transport uses (only where fetch cannot stream a response). */
export interface EventSourceLike {
  addEventListener(type: string, listener: (ev: { data: string }) => void): void;
  close(): void;
}

/** The part of a fetch Response the SSE transport uses: the stream (GET) is read from `body` as it arrives. */
export interface FetchResponseLike {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null };
  body: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }> } } | null;
}

/** The part of fetch the SSE transport uses: GET of the stream (frames in X-Telegraphy-Frames), POSTs of frames. */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: string; cache?: "no-store"; signal?: any },
) => Promise<FetchResponseLike>;

export interface TelegraphyOptions {
  /**
   * Gateway WebSocket URL (ws:, wss:, http:, https: or relative to the page), e.g. "wss://rt.example.com/ws";
   * or several gateways (no load balancer): the first socket goes to a random one, each new socket to the
   * next; or a function asked before each socket for the URL to use.
   */
  url: string | string[] | ((info: { attempt: number; previous: string | null }) => string | Promise<string>);
  /** A single-use connect token ("tg1..."). Omit it for anonymous access; null or "" means the page got none (state "disconnected", error "no_token", unless getToken/tokenUrl can fetch one). */
  token?: string | null;
  /** Called when a new connect token is needed (first connect without `token`, the resume token was refused, or once after a revocation, close 4003). Return null to give up (state "unauthorized"). An error with a numeric `retryAfterMs` delays the next attempt at least that long. */
  getToken?: () => string | null | undefined | Promise<string | null | undefined>;
  /** Used when getToken is absent: POST to this URL (same-origin credentials, `X-CSRFToken`), expecting {"token": "..."}; 401/403 = no token (stop, "unauthorized"); 429 = wait at least Retry-After, then try again. */
  tokenUrl?: string;
  /** CSRF token sent to `tokenUrl` as X-CSRFToken (the Django page config carries it); default: the `csrftoken` cookie. */
  csrfToken?: string;
  /**
   * The transports to try, in order (default ["websocket", "sse"]). While none has opened yet, one that
   * cannot be opened (error or close before open, or no answer within connectTimeout) gives way to the
   * next at once; the first that opens is kept for every reconnect of this client. A transport this
   * environment lacks (no WebSocket; no fetch for SSE) is left out.
   */
  transports?: TransportName[];
  /** The SSE endpoint (GET, with POST to the path it names); default: derived from the url, wss://host/path/ws -> https://host/path/sse. A function gets the WebSocket URL of the gateway in use. */
  sseUrl?: string | ((webSocketUrl: string) => string);
  /** WebSocket implementation; defaults to globalThis.WebSocket; null: none. */
  WebSocket?: (new (url: string) => WebSocketLike) | null;
  /**
   * Implementations for SSE, default the global ones, null for none: fetch (the stream and the POSTs);
   * where ReadableStream is missing fetch cannot stream, and EventSource reads the stream instead (then the
   * client never sends a resume token, which would be in the URL: it reconnects with a fresh token).
   */
  fetch?: FetchLike | null;
  ReadableStream?: unknown;
  EventSource?: (new (url: string) => EventSourceLike) | null;
  /** Connect on construction (in a microtask). Default true. */
  autoConnect?: boolean;
  /** Reconnect backoff bounds in milliseconds. Defaults 500 and 20000. */
  minDelay?: number;
  maxDelay?: number;
  /** Give up on a socket that has not received `connected` after this many ms. Default 10000. */
  connectTimeout?: number;
  /** For tests: timer functions, random source, clock. */
  timers?: { setTimeout(fn: () => void, ms: number): any; clearTimeout(handle: any): void };
  random?: () => number;
  now?: () => number;
}

export interface SubscribeOptions {
  /** Called with the gateway's error for this subscription (forbidden, bad_request, limit_exceeded, internal, unsupported). */
  onError?: (error: TelegraphyError) => void;
  /** Called after each re-subscription following a lost connection: see RecoveryInfo. */
  onRecover?: (info: RecoveryInfo) => void;
  /** Only events whose data satisfy all these conditions (evaluated by the gateway). */
  filter?: Conditions;
  /** Drop events whose data satisfy all these conditions. */
  exclude?: Conditions;
  /**
   * The subscription's name on the gateway (1..64 of [A-Za-z0-9_.:*>-]); events carry it in `sub`.
   * Default: the pattern, or a generated name when that is taken by a subscription with other filters.
   * Handles subscribed with the same name share one gateway subscription (same pattern and filters required).
   */
  name?: string;
  /** Recover from a position saved earlier (Subscription.position), e.g. across a page load. */
  since?: Position;
  /**
   * Be present on the channel (PROTOCOL.md section 11): the pattern must have no wildcards; the token
   * must allow it. Sent again on every re-subscribe after a reconnect. Enables presence(),
   * presenceStats(), presencePaused and the "join"/"leave"/"presence_paused"/"presence_resumed" events.
   */
  presence?: boolean;
}

/** One client present on a channel: `client` names a session (stable across resumes), `user` the token's sub ("" = anonymous). */
export interface PresenceMember {
  client: string;
  user: string;
  /** The token's `info` claim, when it has one. */
  info?: Record<string, unknown>;
}

export interface PresenceSnapshot {
  /** At most the gateway's presence.max_snapshot (default 100) members. */
  clients: PresenceMember[];
  /** True when there were more than it lists. */
  truncated: boolean;
}

export interface PresenceStats {
  /** Clients (sessions) present. */
  clients: number;
  /** Distinct non-empty users among them. */
  users: number;
}

/** One catalogued event (PROTOCOL.md section 12), as the gateway's `events` reply lists it. */
export interface CatalogEvent {
  /** The name template, e.g. "shop.order.{action}.{key}" or "chat.{room}.message". */
  name: string;
  /** Every event name of the entry (and its presence channels) matches one of these patterns. */
  patterns: string[];
  kind: "model" | "custom";
  /** Model events: the operations published (create, update, delete); custom: []. */
  operations: Array<"create" | "update" | "delete">;
  description: string;
  /** A JSON Schema (2020-12) of the events' data; {} = any JSON value. */
  data: Record<string, unknown> | boolean;
  /** The template of the presence channels, or null. */
  presence: string | null;
  /** The version of the data contract (raised on a breaking change). */
  version: number;
}

/** The answer of Telegraphy.events(). */
export interface CatalogListing {
  /** The gateway's catalog.mode: "off" lists nothing; "strict" refuses subscriptions that match no event (code "unknown_event"). */
  mode: "off" | "open" | "strict";
  /** Only events the token's grant may subscribe to, in the catalog's key order. */
  events: CatalogEvent[];
  /** The list did not fit the gateway's catalog.max_reply_bytes: narrow it with options.event. */
  truncated: boolean;
}

/** What presence_paused / presence_resumed carry: the channel's members at that moment. */
export interface PresenceCount {
  clients: number;
}

export type EventHandler<T = unknown> = (event: TelegraphyEvent<T>) => void;

export declare class TelegraphyError extends Error {
  /** Gateway error code (bad_request, unauthorized, forbidden, not_connected, limit_exceeded, internal, unknown_event: strict catalog mode, no catalogued event matches the subscribed pattern) or a client one (revoked, protocol_violation, frame_too_big, bad_frame, no_token, token, handler, bad_url, closed, unsupported: the gateway ignored a name or filter, disconnected: the connection dropped before a presence answer). */
  code: string;
  /** Request id of the failed request, if any. */
  id?: number;
  /** The pattern concerned, if any. */
  event?: string;
  /** WebSocket close code that caused it, if any. */
  closeCode?: number;
  constructor(code: string, message: string, details?: { id?: number; event?: string; closeCode?: number; cause?: unknown });
}

/** A publish or RPC refused or failed. `code`: the worker's own (e.g. "not_found"), the worker's "forbidden" /
 * "internal", the gateway's ("forbidden", "limit_exceeded", "unavailable", "timeout", "internal", "bad_request"),
 * or the client's "disconnected" (the connection ended before the answer) / "timeout" (options.timeout). */
export declare class RpcError extends TelegraphyError {
  constructor(code: string, message: string, details?: { id?: number; cause?: unknown });
}

export declare class Subscription<T = unknown> {
  readonly pattern: string;
  /** The name on the gateway: what this subscription's events carry in `sub`. */
  readonly name: string;
  /** The conditions sent with it (null when none). */
  readonly filters: { filter: Conditions | null; exclude: Conditions | null };
  /** Where it would resume after a reconnect (last event or confirmed position); null without history. */
  readonly position: Position | null;
  readonly state: "pending" | "active" | "failed" | "closed";
  /**
   * True between "presence_paused" and "presence_resumed": the channel has more members than the gateway
   * sends join/leave for (presence.max_join_leave_members), or its members came and went faster than
   * presence.join_leave_per_second. False again after a reconnect (the gateway
   * pauses it again after the re-subscribe if the channel is still over).
   */
  readonly presencePaused: boolean;
  onCreate(fn: (event: ModelEvent<T>) => void): this;
  onUpdate(fn: (event: ModelEvent<T>) => void): this;
  onDelete(fn: (event: ModelEvent<T>) => void): this;
  onError(fn: (error: TelegraphyError) => void): this;
  /** fn after each re-subscription following a lost connection; recovered false = reload your data. */
  onRecover(fn: (info: RecoveryInfo) => void): this;
  on(type: "recovered", fn: (info: RecoveryInfo) => void): this;
  on(type: "error", fn: (error: TelegraphyError) => void): this;
  /** A client became present / is no longer present on the channel (presence subscriptions only; not your own join). */
  on(type: "join" | "leave", fn: (member: PresenceMember) => void): this;
  /**
   * "presence_paused": the channel went over the gateway's bound; no join/leave follow (show a count:
   * presenceStats()). "presence_resumed": back under it; join/leave follow again, those in between are not
   * replayed: call presence() for the list. The client takes no snapshot by itself.
   */
  on(type: "presence_paused" | "presence_resumed", fn: (info: PresenceCount) => void): this;
  /**
   * Who is present now (a presence subscription only). Sent once the subscription is confirmed; rejects with
   * the gateway's error (forbidden, limit_exceeded, bad_request), "disconnected" when the connection drops
   * before the answer, "bad_request" at once for a subscription without presence.
   */
  presence(): Promise<PresenceSnapshot>;
  /** How many are present (counts only, cheap); rejects as presence() does. */
  presenceStats(): Promise<PresenceStats>;
  /**
   * More conditions, merged into the filter (a key given again replaces its value), re-sent to the
   * gateway: the subscription is replaced under its name (ready() waits for the new answer; see setFilters
   * for the events and the position meanwhile). A handle
   * sharing an unnamed subscription with others moves to a subscription of its own.
   */
  filter(conditions: Conditions): this;
  /** The same for the exclude conditions. */
  exclude(conditions: Conditions): this;
  /**
   * Replace both the filter and the exclude conditions (an absent or empty one clears it; no argument
   * clears both) in one subscribe frame under the same name (PROTOCOL.md section 8: replace). Resolves
   * once the gateway confirmed the new filters, rejects if it refused them (the subscription is then
   * failed). Until the gateway's answer, events under this name are dropped: they were matched by the
   * old filters. The position starts over from that answer (nothing is recovered across a swap), so
   * load the data for the new filters once it resolves. Throws a TypeError for a malformed argument.
   * A handle sharing an unnamed subscription with others moves to a subscription of its own.
   */
  setFilters(filters?: { filter?: Conditions | null; exclude?: Conditions | null }): Promise<void>;
  /** Resolves once the gateway confirmed the subscription; rejects if it refused it. */
  ready(): Promise<void>;
  /** Stops delivery at once; resolves when the gateway confirmed (or at once when offline). */
  unsubscribe(): Promise<void>;
}

export declare class Telegraphy {
  constructor(options: TelegraphyOptions);
  /** The gateway's WebSocket URL of the current (or last) connection, whatever its transport; null before the first with a url function. */
  readonly url: string | null;
  /** The transport of the current (or last) connection; null before the first. */
  readonly transport: TransportName | null;
  readonly state: ConnectionState;
  /** Session id and node name from the last `connected` frame. */
  readonly session: string | null;
  readonly node: string | null;
  /** This connection's client id (from `connected`): `event.from.client` of its own publishes. */
  readonly client: string | null;

  /** An instance configured by <script id="telegraphy-config" type="application/json">{"url":..., "token":...}</script>. */
  static fromPage(options?: Partial<TelegraphyOptions>): Telegraphy;
  /** The page's shared instance (fromPage), created on first use. */
  static page(): Telegraphy;
  /** Compatibility with the original API: subscribe the page instance. */
  static register<T = unknown>(eventName: string, callback: EventHandler<T>): Subscription<T>;

  /** The client's version: the same as the gateway's and the Django app's (VERSION). */
  static version: string;
  static validateName: typeof validateName;
  static validatePattern: typeof validatePattern;
  static matches: typeof matches;
  static contains: typeof contains;
  static encodeKey: typeof encodeKey;
  static decodeKey: typeof decodeKey;
  static backoffDelay: typeof backoffDelay;
  static validateSubName: typeof validateSubName;
  static checkConditions: typeof checkConditions;
  static Subscription: typeof Subscription;
  static TelegraphyError: typeof TelegraphyError;
  static RpcError: typeof RpcError;

  subscribe<T = unknown>(pattern: string, handler?: EventHandler<T> | null, options?: SubscribeOptions): Subscription<T>;
  subscribe<T = unknown>(pattern: string, options: SubscribeOptions): Subscription<T>;

  on(type: "state", fn: (state: ConnectionState) => void): () => void;
  on(type: "error", fn: (error: TelegraphyError) => void): () => void;
  /** Every subscription's RecoveryInfo after a reconnect (also given to its onRecover). */
  on(type: "recovered", fn: (info: RecoveryInfo) => void): () => void;
  off(type: "state" | "error" | "recovered", fn: (...args: any[]) => void): void;

  /** Publish an event (PROTOCOL.md section 13.1; the token needs a publish grant). Resolves on `published`; rejects with an RpcError. Never retried. */
  publish(name: string, data?: unknown): Promise<void>;
  /** Call an RPC method (section 14); resolves with the worker's result, rejects with an RpcError. Never retried automatically. */
  rpc<R = unknown>(method: string, data?: unknown, options?: RpcOptions): Promise<R>;
  /**
   * The catalogued events this connection may subscribe to (PROTOCOL.md section 12), narrowed by
   * options.event (a pattern). Waits for the connection (up to connectTimeout). Rejects with a
   * TelegraphyError: not_connected, internal (the gateway's catalog is not loaded yet: retry), bad_request,
   * disconnected.
   */
  events(options?: { event?: string }): Promise<CatalogListing>;

  /** Start (or restart after close()) connecting. Called automatically unless autoConnect is false. */
  connect(): this;
  /** Close the connection and stop reconnecting (state "disconnected"); subscriptions are kept for connect(). */
  close(): void;
}

/** True when `name` is a valid event name (PROTOCOL.md section 1). */
export declare function validateName(name: string): boolean;
/** True when `pattern` is a valid pattern. */
export declare function validatePattern(pattern: string): boolean;
/** True when the (valid) pattern matches the (valid) name. */
export declare function matches(pattern: string, name: string): boolean;
/** True when every name `inner` matches, `outer` matches too. */
export declare function contains(outer: string, inner: string): boolean;
/** A primary key as a name token (PROTOCOL.md section 2, model events). */
export declare function encodeKey(pk: string | number): string;
/** The str(pk) a key token stands for. */
export declare function decodeKey(token: string): string;
/** True when `name` may name a subscription (PROTOCOL.md section 8). */
export declare function validateSubName(name: string): boolean;
/** Throws a TypeError when `conditions` is not a well-shaped filter/exclude; null when absent or empty. */
export declare function checkConditions(conditions: Conditions | null | undefined, what?: string): Conditions | null;
/** Reconnect delay in ms for attempt n (0-based): min + jitter over min*2^n, capped at max. */
export declare function backoffDelay(attempt: number, random?: () => number, min?: number, max?: number): number;
