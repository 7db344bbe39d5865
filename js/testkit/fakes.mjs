// In-process fakes for unit tests of the client's state machine: a manual clock and a WebSocket
// class whose "server side" the test drives, and a client wired to both. Integration tests use the
// real gateway instead.
import { Telegraphy } from "../telegraphy.js";

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
 * An EventSource class recording every stream the client opens; the test plays the gateway's SSE
 * endpoint (section 10.1). Like a real EventSource, a closed one dispatches nothing.
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

/**
 * A fetch recording the client's POSTs; each waits for the test's answer(status) unless `auto` gives
 * the status at once.
 */
export function fakeFetch(auto = null) {
  const posts = [];
  const fetch = (url, init) =>
    new Promise((resolve, reject) => {
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
  return { fetch, posts };
}
