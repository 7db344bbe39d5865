// Client actions (PROTOCOL.md sections 13.1 and 14): `publish` (acknowledged by `published`) and `rpc`
// (answered by `rpc_result` or `error`), matched to their requests by `id`. Nothing here is retried: a request
// whose connection ends before its answer rejects with code "disconnected" (the gateway may or may not have
// handled it). Retrying is the caller's decision: a publish is at most once anyway, an rpc is safe to retry
// only if its handler is idempotent (PROTOCOL.md section 14, "At most once").
import { TelegraphyError } from "./errors.js";

/** An RPC or publish refused or failed: `code` is the gateway's or the worker's code (e.g. "forbidden",
 * "unavailable", "timeout", "not_found"), or "disconnected" (the connection ended first). */
export class RpcError extends TelegraphyError {
  constructor(code, message, details = {}) {
    super(code, message, details);
    this.name = "RpcError";
  }
}

// Client-side bound on waiting for an answer (the gateway answers within its rpc.timeout, at most 60 s).
const DEFAULT_TIMEOUT_MS = 65000;

export class Actions {
  // host: {send(frame) -> bool, live() -> bool, id() -> number, setTimeout, clearTimeout}
  constructor(host) {
    this._host = host;
    this._pending = new Map(); // id -> {kind, resolve, reject, timer}
    this._abandoned = new Set(); // ids timed out here whose answer may still come on this connection
  }

  publish(name, data) {
    if (typeof name !== "string" || name === "") return Promise.reject(new TypeError("Telegraphy: publish needs an event name"));
    return this._request("publish", { type: "publish", event: name, data: data === undefined ? null : data }, null);
  }

  rpc(method, data, options = {}) {
    if (typeof method !== "string" || method === "") return Promise.reject(new TypeError("Telegraphy: rpc needs a method name"));
    const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
    if (!(timeout > 0)) return Promise.reject(new TypeError("Telegraphy: rpc timeout must be a positive number of ms"));
    return this._request("rpc", { type: "rpc", method, data: data === undefined ? null : data }, timeout);
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
    if (frame.type === "published" && kind === "publish") this._settle(frame.id, null, undefined);
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
}
