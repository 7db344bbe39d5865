// What every transport is (PROTOCOL.md section 10): it carries frames and the close, nothing else.
//
// One transport object per connection attempt. open(url, frames) starts it; `frames` (client frames)
// go to the gateway first, in order. send(frame) queues or sends one more frame and returns false
// when the transport cannot carry frames (any more). close(code, reason) ends it; no event follows.
// Events, one listener each (on(type, fn)): "open" (the gateway answered: the transport works on this
// network), "frame" (text of one server frame), "close" (code, reason: the gateway's close code, or
// 1006 when the link failed; the last event) and "error" (informational: a close follows).

export class Transport {
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

export const noop = () => {};

/** JSON.parse, or null for text that is not JSON. */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
