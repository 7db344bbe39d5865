// In-process fakes for unit tests of the client's state machine: a manual clock and a WebSocket
// class whose "server side" the test drives, and a client wired to both. Integration tests use the
// real gateway instead.
import { Telegraphy } from "telegraphy-client";

/** Let pending promise callbacks (and the client's queueMicrotask start) run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

export class FakeClock {
  constructor() {
    this.t = 0;
    this.timers = new Map();
    this.seq = 0;
    this.now = () => this.t;
    this.setTimeout = (fn, ms) => {
      const id = ++this.seq;
      this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
      return id;
    };
    this.clearTimeout = (id) => void this.timers.delete(id);
  }

  /** Milliseconds until the earliest pending timer, or null. */
  nextDelay() {
    let best = null;
    for (const { at } of this.timers.values()) if (best === null || at < best) best = at;
    return best === null ? null : best - this.t;
  }

  /** Advance time by ms, running due timers in order (and the promise work they start). */
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = next[1].at;
      next[1].fn();
      await flush();
    }
    this.t = end;
    await flush();
  }
}

/** A WebSocket class recording every socket the client opens; the test plays the gateway. */
export function fakeWebSocket() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error("send() on a socket that is not open");
      this.sent.push(JSON.parse(text));
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      if (this.readyState === 3) return;
      this.readyState = 3;
      queueMicrotask(() => this.onclose?.({ code: 1005, reason: "" }));
    }

    // ---- the gateway's side ----
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }

    receive(frame) {
      this.onmessage?.({ data: typeof frame === "string" ? frame : JSON.stringify(frame) });
    }

    serverClose(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    refuse() {
      this.readyState = 3;
      this.onerror?.({});
      this.onclose?.({ code: 1006, reason: "" });
    }

    frames(type) {
      return this.sent.filter((f) => f.type === type);
    }
  }
  return { FakeSocket, sockets, last: () => sockets[sockets.length - 1] };
}

/** A client on a fake socket and clock; records its states and errors. */
export function setup(options = {}) {
  const clock = new FakeClock();
  const ws = fakeWebSocket();
  const states = [];
  const errors = [];
  const tg = new Telegraphy({
    url: "ws://gateway.test/ws",
    token: "tg1.first",
    WebSocket: ws.FakeSocket,
    timers: clock,
    now: clock.now,
    random: () => 0.5,
    transports: ["websocket"],
    ...options,
  });
  tg.on("state", (s) => states.push(s));
  tg.on("error", (e) => errors.push(e));
  return { clock, ws, tg, states, errors };
}

let session = 0;

/** The gateway accepts the socket's connect (the frame is kept as socket.connectedFrame). */
export function connected(socket, extra = {}) {
  session++;
  socket.connectedFrame = {
    type: "connected",
    id: socket.frames("connect")[0].id,
    session: `s${session}`,
    node: "gw-1",
    heartbeat: 25,
    resume: `tg1r.resume${session}`,
    resume_expires_in: 900,
    ...extra,
  };
  socket.receive(socket.connectedFrame);
}

/** Open the first socket and accept its connect. */
export async function online(ctx, extra) {
  await flush();
  const socket = ctx.ws.last();
  socket.accept();
  connected(socket, extra);
  return socket;
}

/** Answer every subscribe frame the socket has sent with `subscribed` (plus `extra` fields). */
export function answerSubscribes(socket, extra = {}) {
  for (const f of socket.frames("subscribe")) socket.receive({ type: "subscribed", id: f.id, event: f.event, ...extra });
}

/**
 * An EventSource class recording every stream the client opens (the fallback where fetch cannot stream: a
 * client with `ReadableStream: null`); the test plays the gateway's SSE endpoint (section 10.1). Like a real
 * EventSource, a closed one dispatches nothing.
 */
export function fakeEventSource() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      this.listeners = {};
      sources.push(this);
    }

    addEventListener(type, fn) {
      (this.listeners[type] ||= []).push(fn);
    }

    close() {
      this.closed = true;
      this.readyState = 2;
    }

    /** The client frames of the GET (?frames=). */
    get frames() {
      return JSON.parse(new URL(this.url).searchParams.get("frames"));
    }

    // ---- the gateway's side ----
    dispatch(type, data) {
      if (this.closed) return;
      for (const fn of this.listeners[type] || []) fn({ type, data: typeof data === "string" ? data : JSON.stringify(data) });
    }

    stream(id = "AAAAAAAAAAAAAAAAAAAAAA") {
      this.readyState = 1;
      this.dispatch("stream", { stream: id, post: `/sse/${id}` });
    }

    receive(frame) {
      this.dispatch("message", frame);
    }

    serverClose(code, reason = "") {
      this.dispatch("close", { code, reason });
    }

    /** The request failed or the stream broke (a real EventSource would now reconnect by itself). */
    fail() {
      this.readyState = 0;
      this.dispatch("error", {});
    }
  }
  return { FakeEventSource, sources, last: () => sources[sources.length - 1] };
}

/** The text/event-stream message the gateway writes for `data` (and `type`, when not a plain frame). */
export const sseMessage = (type, data) => `${type === "message" ? "" : `event: ${type}\n`}data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`;

/**
 * One SSE stream the client opened with fetch (GET, the opening frames in X-Telegraphy-Frames); the test
 * plays the gateway. The response (200, text/event-stream) is sent with the first message, or refused with
 * refuse(status). Every method that writes awaits until the client has read it.
 */
class FakeStream {
  constructor(url, init) {
    this.url = url;
    this.init = init;
    this.closed = false;
    this._answered = false;
    this._controller = null;
    this.response = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    init.signal?.addEventListener("abort", () => {
      this.closed = true;
      const err = new DOMException("The operation was aborted.", "AbortError");
      if (this._controller) this._controller.error(err);
      else this._reject(err);
    });
  }

  /** The client frames of the GET (its X-Telegraphy-Frames header). */
  get frames() {
    return JSON.parse(this.init.headers["X-Telegraphy-Frames"]);
  }

  _answer() {
    if (this._answered) return;
    this._answered = true;
    const body = new ReadableStream({ start: (controller) => void (this._controller = controller) });
    this._resolve(new Response(body, { status: 200, headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache" } }));
  }

  // ---- the gateway's side ----
  /** Raw text of the stream (split anywhere). */
  async write(text) {
    this._answer();
    await flush();
    if (!this.closed) this._controller.enqueue(new TextEncoder().encode(text));
    await flush();
  }

  dispatch(type, data) {
    return this.write(sseMessage(type, data));
  }

  stream(id = "AAAAAAAAAAAAAAAAAAAAAA") {
    return this.dispatch("stream", { stream: id, post: `/sse/${id}` });
  }

  receive(frame) {
    return this.dispatch("message", frame);
  }

  /** The close message; the gateway then ends the response. */
  async serverClose(code, reason = "") {
    await this.dispatch("close", { code, reason });
    if (!this.closed) this._controller.close();
    await flush();
  }

  /** The request is answered `status` (e.g. 400 for bad frames, 503) with a plain-text reason. */
  async refuse(status, reason = "refused") {
    this._answered = true;
    this._resolve(new Response(reason, { status, headers: { "Content-Type": "text/plain" } }));
    await flush();
  }

  /** The request failed (no answer) or the stream broke. */
  async fail() {
    if (!this._answered) {
      this._answered = true;
      this._reject(new TypeError("Failed to fetch"));
    } else if (!this.closed) this._controller.error(new TypeError("network error"));
    await flush();
  }
}

/**
 * A fetch playing the gateway's SSE endpoint: a GET opens a FakeStream (in `sources`), a POST is recorded
 * and waits for the test's answer(status) unless `auto` gives the status at once.
 */
export function fakeFetch(auto = null) {
  const posts = [];
  const sources = [];
  const fetch = (url, init) => {
    if (init.method === "GET") {
      const source = new FakeStream(url, init);
      sources.push(source);
      return source.response;
    }
    return new Promise((resolve, reject) => {
      const post = {
        url,
        init,
        body: JSON.parse(init.body),
        answer: (status) => resolve({ status, ok: status >= 200 && status < 300 }),
        fail: () => reject(new TypeError("Failed to fetch")),
      };
      posts.push(post);
      if (auto !== null) post.answer(auto);
    });
  };
  return { fetch, posts, sources, last: () => sources[sources.length - 1] };
}
