// The Server-Sent Events transport (PROTOCOL.md section 10.1), for networks that break WebSockets.
//
// The stream: GET <url> with the opening frames (the connect and the first subscribes) as JSON in the
// X-Telegraphy-Frames header, never in the URL (proxies and servers log URLs, and the connect frame holds a
// token), read with fetch as a text/event-stream by SseParser. Its first `stream` event names the POST path,
// messages without an event name are server frames, `close` gives {code, reason}.
// Later client frames go up by POST, one request at a time (so they arrive in order), queued frames batched
// into one JSON array.
//
// Where fetch cannot stream a response body (no ReadableStream), an EventSource reads the stream instead and
// the opening frames must go in the URL (`?frames=`): then they may hold a single-use connect token but
// never a resume token (reusable for minutes), see `resumable`; the client connects with a fresh token instead.
// Neither reconnects by itself: the frames held a single-use token, so any error ends the transport and the
// client reconnects (resume + since).
import { PROTOCOL } from "./constants.js";
import { backoffDelay } from "./backoff.js";
import { SseParser } from "./sse-parser.js";
import { Transport, parseJson } from "./transport.js";

export const FRAMES_HEADER = "X-Telegraphy-Frames";
const SSE_BATCH = 16; // client frames per POST at most (section 10.1 takes a JSON array)
const SSE_GRACE_MS = 2000; // after a failed POST, how long the stream may take to end by itself
const RESUME_TOKEN = `${PROTOCOL.tokens.resume_prefix}.`;

/** JSON with every character above ASCII escaped (\uXXXX): a header value is bytes, and this is the same JSON. */
export function asciiJson(value) {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

// env: {fetch, EventSource, ReadableStream}: fetch streams response bodies where ReadableStream exists.
const streams = (env) => typeof env.fetch === "function" && typeof env.ReadableStream === "function";

/** True when a frame would put a reusable credential (a resume token) where it may be logged. */
const holdsResume = (frame) => frame.resume !== undefined || (typeof frame.token === "string" && frame.token.startsWith(RESUME_TOKEN));

export class SseTransport extends Transport {
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
    this._es = null; // the EventSource, in the fallback
    this._abort = null; // aborts the streaming fetch
    this._base = null; // the stream's URL: the POST path is relative to it
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
    this._base = new URL(url).href; // throws on a malformed URL
    if (streams(this._env)) this._openFetch(frames);
    else this._openEventSource(frames);
  }

  _openFetch(frames) {
    const fetch = this._fetch; // called unbound: window.fetch refuses another `this`
    const abort = new AbortController();
    this._abort = abort;
    const init = {
      method: "GET",
      headers: { Accept: "text/event-stream", [FRAMES_HEADER]: asciiJson(frames) },
      cache: "no-store",
      signal: abort.signal,
    };
    Promise.resolve()
      .then(() => fetch(this._base, init))
      .then((res) => {
        if (this._ended) return;
        const type = (res.headers && res.headers.get("Content-Type")) || "";
        if (!res.ok || !/^text\/event-stream\b/i.test(type)) throw new Error(`the stream answered HTTP ${res.status} (${type || "no content type"})`);
        if (!res.body || typeof res.body.getReader !== "function") throw new Error("the stream's body cannot be read as it arrives");
        return this._read(res.body.getReader());
      })
      .catch((err) => this._broken(err));
  }

  async _read(reader) {
    const decoder = new TextDecoder();
    const parser = new SseParser((m) => this._message(m.event, m.data));
    for (;;) {
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
    // The request failed (refused, not an event stream) or the stream broke: EventSource would now
    // reconnect by itself with the same frames, so close it and report a lost link.
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
    if (status === 413) return this._end(PROTOCOL.close_codes.frame_too_big.code, "frame too big");
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
