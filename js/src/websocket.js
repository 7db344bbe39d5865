// The WebSocket transport (PROTOCOL.md section 3): one frame per text message, the close code and reason in
// the close frame.
import { Transport, noop } from "./transport.js";

function closeQuietly(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    // already closed or closing
  }
}

export class WebSocketTransport extends Transport {
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
