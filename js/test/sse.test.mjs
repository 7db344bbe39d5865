// The SSE transport (PROTOCOL.md section 10.1) and the transport fallback, against an in-process fake
// fetch (streams and POSTs; a fake EventSource for the fallback) and a manual clock; the SSE reader against
// proto/vectors/sse.json. The same paths run in Chromium against the real gateway in sse-browser.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy } from "telegraphy-client";
import { readFileSync } from "node:fs";
import { fakeEventSource, fakeFetch, flush, setup, connected } from "../testkit/fakes.mjs";
import { SseParser } from "../src/sse-parser.js";

/** A client on the fake clock with SSE only (or `transports`) and a fake fetch (streams: ctx.sse). */
function sseSetup(options = {}) {
  const http = fakeFetch(options.autoPost ?? null);
  const ctx = setup({ transports: ["sse"], fetch: http.fetch, ...options });
  return { ...ctx, sse: http, http };
}

/** The gateway accepts the stream's connect (its first frame). */
function accept(source, extra = {}) {
  const connect = source.frames[0];
  source.connectedFrame = { type: "connected", id: connect.id, session: "s1", node: "gw-1", heartbeat: 25, resume: "tg1r.resume", resume_expires_in: 900, ...extra };
  return source.receive(source.connectedFrame);
}

/** Open the first stream and accept its connect. */
async function sseOnline(ctx) {
  await flush();
  const source = ctx.sse.last();
  await source.stream();
  await accept(source);
  return source;
}

test("SSE: GET /sse with X-Telegraphy-Frames [connect, subscribes] (no token in the URL), stream event, frames as messages, later frames by POST in order", async () => {
  const ctx = sseSetup();
  const got = [];
  ctx.tg.subscribe("a.>", (e) => got.push(e.name));
  await flush();
  const source = ctx.sse.last();
  assert.equal(source.url, "http://gateway.test/sse", "derived from ws://gateway.test/ws; nothing in the query");
  assert.equal(source.init.method, "GET");
  assert.equal(source.init.headers.Accept, "text/event-stream");
  assert.equal(ctx.tg.transport, "sse");
  const [connect, subscribe] = source.frames;
  assert.deepEqual(connect, { type: "connect", id: connect.id, token: "tg1.first" });
  assert.deepEqual(subscribe, { type: "subscribe", id: subscribe.id, event: "a.>" });
  assert.equal(source.frames.length, 2);

  await source.stream("Q2hhbmdlTWVQbGVhc2UxMg");
  await accept(source);
  assert.equal(ctx.tg.state, "connected");
  await flush();
  assert.deepEqual(ctx.http.posts, [], "the subscribe went with the GET: not sent again");
  await source.receive({ type: "subscribed", id: subscribe.id, event: "a.>" });
  await source.receive({ type: "event", sub: "a.>", name: "a.1", data: 1 });
  assert.deepEqual(got, ["a.1"]);

  // later frames: POST /sse/<stream>, text/plain, one request at a time; what queues meanwhile is one array
  await source.receive({ type: "ping" });
  ctx.tg.subscribe("b.>", () => {});
  ctx.tg.subscribe("c.>", () => {});
  await flush();
  assert.equal(ctx.http.posts.length, 1, "one POST in flight");
  const [first] = ctx.http.posts;
  assert.equal(first.url, "http://gateway.test/sse/Q2hhbmdlTWVQbGVhc2UxMg");
  assert.ok(ctx.http.posts.every((p) => !p.url.includes("tg1")), "no token in any URL");
  assert.equal(first.init.method, "POST");
  assert.equal(first.init.headers["Content-Type"], "text/plain;charset=UTF-8");
  assert.deepEqual(first.body, { type: "pong" });
  first.answer(202);
  await flush();
  assert.equal(ctx.http.posts.length, 2);
  assert.deepEqual(ctx.http.posts[1].body.map((f) => [f.type, f.event]), [["subscribe", "b.>"], ["subscribe", "c.>"]]);
  assert.deepEqual(ctx.errors, []);
});

test("SSE: event close maps like a WebSocket close: 4001 without getToken stops; the EventSource is closed, never reconnects by itself", async () => {
  const ctx = sseSetup();
  await flush();
  const source = ctx.sse.last();
  await source.stream();
  await source.serverClose(4001, "token refused");
  assert.equal(source.closed, true);
  assert.equal(ctx.tg.state, "unauthorized");
  assert.equal(ctx.clock.nextDelay(), null, "nothing scheduled");
  assert.equal(ctx.sse.sources.length, 1);
});

test("SSE: 4003 with getToken: one fresh token at once; 1008 stops with protocol_violation", async () => {
  let calls = 0;
  const ctx = sseSetup({ getToken: async () => `tg1.fresh${++calls}` });
  const source = await sseOnline(ctx);
  await source.serverClose(4003, "revoked");
  assert.equal(ctx.clock.nextDelay(), 0);
  await ctx.clock.advance(0);
  const second = ctx.sse.last();
  assert.notEqual(second, source);
  assert.deepEqual(second.frames[0], { type: "connect", id: second.frames[0].id, token: "tg1.fresh1" }, "not the revoked resume");
  await second.stream();
  await second.serverClose(1008, "protocol violation");
  assert.equal(ctx.tg.state, "disconnected");
  assert.equal(ctx.errors.at(-1).code, "protocol_violation");
  assert.equal(ctx.errors.at(-1).closeCode, 1008);
});

test("SSE: a broken stream (error) is closed and reopened after backoff with resume and each subscription's since", async () => {
  const ctx = sseSetup();
  const sub = ctx.tg.subscribe("h.>", () => {});
  const source = await sseOnline(ctx);
  await source.receive({ type: "subscribed", id: source.frames[1].id, event: "h.>", epoch: "e1", seq: 4 });
  await source.receive({ type: "event", sub: "h.>", name: "h.x", data: {}, epoch: "e1", seq: 5 });
  assert.deepEqual(sub.position, { epoch: "e1", seq: 5 });
  await source.fail();
  assert.equal(source.closed, true, "closed before EventSource could retry with the same frames");
  assert.equal(ctx.tg.state, "reconnecting");
  const delay = ctx.clock.nextDelay();
  assert.ok(delay >= 500, `backoff ${delay}`);
  await ctx.clock.advance(delay);
  const next = ctx.sse.last();
  assert.notEqual(next, source);
  const [connect, subscribe] = next.frames;
  assert.deepEqual(connect, { type: "connect", id: connect.id, resume: "tg1r.resume" });
  assert.deepEqual(subscribe, { type: "subscribe", id: subscribe.id, event: "h.>", since: { epoch: "e1", seq: 5 } });
  await next.stream();
  await accept(next);
  const recovered = [];
  ctx.tg.on("recovered", (info) => recovered.push(info));
  await next.receive({ type: "subscribed", id: subscribe.id, event: "h.>", epoch: "e1", seq: 5, recovered: true });
  assert.deepEqual(recovered.map((r) => r.recovered), [true]);
});

test("SSE: the opening frames stop at 16 subscribes and 4 KB; the rest is POSTed after connected", async () => {
  const ctx = sseSetup({ autoPost: 202 });
  for (let i = 0; i < 40; i++) ctx.tg.subscribe(`many.${i}.>`, () => {});
  ctx.tg.subscribe("big.>", () => {}, { filter: { text__icontains: "x".repeat(4000) } });
  await flush();
  const source = ctx.sse.last();
  const opening = source.frames;
  assert.equal(opening.length, 17);
  assert.ok(JSON.stringify(opening).length <= 4096);
  await source.stream();
  await accept(source);
  await flush();
  const posted = ctx.http.posts.flatMap((p) => [].concat(p.body));
  assert.ok(ctx.http.posts.every((p) => [].concat(p.body).length <= 16), "at most 16 frames a POST");
  const events = [...opening.slice(1), ...posted].map((f) => f.event).sort();
  assert.equal(events.length, 41);
  assert.equal(new Set(events).size, 41, "each subscription asked once");
});

test("SSE: the opening frames are measured as the header carries them (non-ASCII escaped)", async () => {
  const ctx = sseSetup({ autoPost: 202 });
  ctx.tg.subscribe("big.>", () => {}, { filter: { text__icontains: "é".repeat(1500) } }); // 3000 bytes: a valid filter
  ctx.tg.subscribe("small.>", () => {});
  await flush();
  const source = ctx.sse.last();
  assert.ok(source.init.headers["X-Telegraphy-Frames"].length <= 4096, "the header stays within 4 KB");
  assert.deepEqual(source.frames.map((f) => f.type), ["connect"], "the big one does not fit: it and what follows are POSTed");
  await source.stream();
  await accept(source);
  await flush();
  assert.deepEqual(ctx.http.posts.flatMap((p) => [].concat(p.body)).map((f) => f.event), ["big.>", "small.>"], "in order");
});

test("SSE: POST 429 is retried later in smaller batches; 413 for one frame stops like a 1009 close", async () => {
  const ctx = sseSetup();
  const source = await sseOnline(ctx);
  ctx.tg.subscribe("a.>", () => {});
  ctx.tg.subscribe("b.>", () => {});
  await flush();
  const first = ctx.http.posts[0];
  assert.equal(first.body.length, 2);
  first.answer(429);
  await flush();
  assert.equal(ctx.http.posts.length, 1, "not at once");
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.http.posts.length, 2);
  assert.equal(ctx.http.posts[1].body.event, "a.>", "the same frames again, in order, half as many");
  ctx.http.posts[1].answer(202);
  await flush();
  assert.equal(ctx.http.posts[2].body.event, "b.>");
  ctx.http.posts[2].answer(413);
  await flush();
  assert.equal(source.closed, true);
  assert.equal(ctx.tg.state, "disconnected");
  assert.equal(ctx.errors.at(-1).code, "frame_too_big");
});

test("SSE: a POST answered 404 waits for the stream's close event (its code counts), else gives up after a grace period", async () => {
  const ctx = sseSetup();
  const source = await sseOnline(ctx);
  await source.receive({ type: "ping" });
  await flush();
  ctx.http.posts[0].answer(404);
  await flush();
  assert.equal(ctx.tg.state, "connected", "not yet: the stream says why");
  assert.equal(ctx.tg.subscribe("z.>", () => {}).state, "pending");
  await flush();
  assert.equal(ctx.http.posts.length, 1, "nothing more is posted into a gone stream");
  await source.serverClose(1012, "restarting");
  assert.equal(source.closed, true);
  assert.equal(ctx.tg.state, "reconnecting");
  assert.equal(ctx.clock.nextDelay(), 0, "1012: at once, as on a WebSocket");

  await ctx.clock.advance(0);
  const next = ctx.sse.last();
  await next.stream();
  await accept(next);
  await next.receive({ type: "ping" });
  await flush();
  ctx.http.posts.at(-1).fail(); // no answer at all
  await flush();
  assert.equal(ctx.tg.state, "connected");
  await ctx.clock.advance(1999);
  assert.equal(ctx.tg.state, "connected");
  await ctx.clock.advance(1);
  assert.equal(next.closed, true);
  assert.equal(ctx.tg.state, "reconnecting");
  assert.ok(ctx.clock.nextDelay() >= 500, "a lost link: backoff");
});

test("fallback: a WebSocket that cannot be opened gives way to SSE at once; once SSE worked, reconnects stay on SSE", async () => {
  const ctx = sseSetup({ transports: undefined }); // the default: ["websocket", "sse"]
  ctx.tg.subscribe("f.>", () => {});
  await flush();
  assert.equal(ctx.tg.transport, "websocket");
  ctx.ws.last().refuse(); // e.g. a proxy answering the upgrade with 403
  assert.equal(ctx.tg.state, "reconnecting");
  assert.equal(ctx.clock.nextDelay(), 0, "an untried transport: at once");
  await ctx.clock.advance(0);
  assert.equal(ctx.tg.transport, "sse");
  const source = ctx.sse.last();
  assert.equal(source.frames[0].token, "tg1.first", "the unused connect token");
  await source.stream();
  await accept(source);
  assert.equal(ctx.tg.state, "connected");

  await source.fail();
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.ws.sockets.length, 1, "no WebSocket again");
  assert.equal(ctx.sse.sources.length, 2);
  await ctx.sse.last().fail(); // the gateway is down: still SSE, with backoff
  assert.ok(ctx.clock.nextDelay() >= 500);
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.ws.sockets.length, 1);
  assert.equal(ctx.tg.transport, "sse");
});

test("fallback: when neither opens, backoff and then the first transport again; a WebSocket that hangs is given up after connectTimeout", async () => {
  const ctx = sseSetup({ transports: ["websocket", "sse"], connectTimeout: 3000 });
  await flush();
  await ctx.clock.advance(3000); // the upgrade never answers
  assert.equal(ctx.ws.last().closedWith.code, 4000);
  await ctx.clock.advance(0);
  await ctx.sse.last().fail(); // SSE refused too (e.g. 503)
  const delay = ctx.clock.nextDelay();
  assert.ok(delay >= 500, `backoff ${delay}`);
  await ctx.clock.advance(delay);
  assert.equal(ctx.ws.sockets.length, 2, "the WebSocket again");
  assert.equal(ctx.tg.transport, "websocket");
});

test("a WebSocket that worked stays: a reconnect refused before open does not move the client to SSE", async () => {
  const ctx = sseSetup({ transports: ["websocket", "sse"] });
  await flush();
  const socket = ctx.ws.last();
  socket.accept();
  connected(socket);
  socket.serverClose(1006); // e.g. the gateway restarts
  for (let i = 0; i < 3; i++) {
    await ctx.clock.advance(ctx.clock.nextDelay());
    ctx.ws.last().refuse();
  }
  assert.equal(ctx.ws.sockets.length, 4);
  assert.equal(ctx.sse.sources.length, 0);
  assert.equal(ctx.tg.transport, "websocket");
});

test("transports and sseUrl options; an environment without EventSource", async () => {
  const { fetch, sources } = fakeFetch();
  const make = (options) => new Telegraphy({ url: "ws://gw.test/ws", autoConnect: false, fetch, ...options });
  for (const transports of [[], ["smoke"], ["sse", "sse"], "sse"]) {
    assert.throws(() => make({ transports }), TypeError, JSON.stringify(transports));
  }
  // Without fetch SSE is left out of the default list, and alone it cannot work
  assert.throws(() => new Telegraphy({ url: "ws://gw.test/ws", transports: ["sse"], fetch: null, autoConnect: false }), /fetch/);
  assert.throws(() => new Telegraphy({ url: "ws://gw.test/ws", transports: ["sse"], ReadableStream: null, EventSource: null, autoConnect: false }), /fetch/);
  assert.equal(new Telegraphy({ url: "ws://gw.test/ws", WebSocket: class {}, autoConnect: false }).transport, null);

  const cases = [
    [{ url: "wss://rt.example/app/ws?x=1" }, "https://rt.example/app/sse?x=1"],
    [{ url: "ws://rt.example/realtime" }, "http://rt.example/realtime/sse"],
    [{ url: "https://rt.example/ws" }, "https://rt.example/sse"],
    [{ url: "ws://rt.example/ws", sseUrl: "https://events.example/stream" }, "https://events.example/stream"],
    [{ url: "ws://rt.example/ws", sseUrl: (ws) => ws.replace("ws://", "http://").replace("/ws", "/other") }, "http://rt.example/other"],
  ];
  for (const [options, expected] of cases) {
    const tg = make({ transports: ["sse"], ...options });
    tg.connect();
    await flush();
    assert.equal(sources.at(-1).url, expected, JSON.stringify(options.url));
    assert.equal(tg.transport, "sse");
    tg.close();
    assert.equal(sources.at(-1).closed, true);
  }
});

test("fallback with several gateways: the next transport is tried on the same gateway, the next gateway after that", async () => {
  const ctx = sseSetup({ transports: ["websocket", "sse"], url: ["ws://a.test/ws", "ws://b.test/ws"], random: () => 0 });
  await flush();
  assert.equal(ctx.ws.last().url, "ws://a.test/ws");
  ctx.ws.last().refuse();
  await ctx.clock.advance(0);
  assert.equal(new URL(ctx.sse.last().url).host, "a.test", "SSE on the same gateway");
  await ctx.sse.last().fail();
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.ws.last().url, "ws://b.test/ws", "then the next gateway, from the first transport");
});

const vectors = JSON.parse(readFileSync(new URL("../../proto/vectors/sse.json", import.meta.url), "utf8"));

// proto/vectors/sse.json: the gateway's last message of a stream, as it writes it (shared with src/transports/sse.rs).
// Whatever the code, the client takes the close from the message's data and ends the stream itself.
test("SSE: every close message of proto/vectors/sse.json ends the stream with its code", async () => {
  assert.ok(vectors.close.length > 0);
  for (const { code, reason, sse } of vectors.close) {
    const ctx = sseSetup({ getToken: async () => "tg1.fresh" });
    const source = await sseOnline(ctx);
    const closes = [];
    ctx.tg.on("state", (s) => closes.push(s));
    await source.write(sse);
    assert.equal(source.closed, true, `${code}: the client aborted the stream`);
    assert.notEqual(ctx.tg.state, "connected", `${code} ${reason}: the client left the connected state`);
    ctx.tg.close();
  }
});

/** The messages SseParser reads from `chunks`. */
function parse(chunks, maxChars) {
  const got = [];
  const parser = new SseParser((m) => got.push(m), maxChars);
  for (const chunk of chunks) parser.push(chunk);
  return got;
}

test("SSE reader: every message of proto/vectors/sse.json, cut anywhere, with any line ending", () => {
  const all = [...vectors.messages, ...vectors.close];
  assert.ok(vectors.messages.length > 0);
  const text = all.map((v) => v.sse).join("");
  const expected = all.map((v) => {
    const lines = v.sse.trimEnd().split("\n");
    const field = (name) => lines.find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2);
    return { event: field("event") ?? "message", data: field("data"), id: field("id") ?? "" };
  });
  // the id stays until another one comes (as in EventSource)
  for (let i = 1; i < expected.length; i++) if (!all[i].sse.includes("\nid: ") && !all[i].sse.startsWith("id: ")) expected[i].id = expected[i - 1].id;
  for (const frame of vectors.messages) JSON.parse(frame.sse.split("data: ")[1]); // each data is one JSON frame
  for (const eol of ["\n", "\r\n", "\r"]) {
    const stream = text.replace(/\n/g, eol);
    assert.deepEqual(parse([stream]), expected, JSON.stringify(eol));
    for (let cut = 0; cut <= stream.length; cut++) {
      assert.deepEqual(parse([stream.slice(0, cut), stream.slice(cut)]), expected, `cut at ${cut}, ${JSON.stringify(eol)}`);
    }
  }
  assert.deepEqual(parse([[...text].join("\u0000").split("\u0000")].flat()), expected, "one character at a time");
});

test("SSE reader: comments, a byte order mark, multi-line data, fields without a space, messages without data", () => {
  const stream = "\ufeff: hello\n\nevent: x\ndata:a\ndata: b\nid: 7\nretry: 10\nfoo: bar\n\ndata\n\nevent: empty\n\n";
  assert.deepEqual(parse([stream]), [
    { event: "x", data: "a\nb", id: "7" },
    { event: "message", data: "", id: "7" },
  ]);
  assert.deepEqual(parse(["data: half"]), [], "no blank line yet: nothing");
});

test("SSE reader: a message over the bound throws instead of growing (a hostile or broken stream)", () => {
  assert.throws(() => parse(["data: " + "x".repeat(100)], 64), RangeError, "one endless line");
  assert.throws(() => parse([Array.from({ length: 20 }, () => "data: xxxxxxxx\n").join("")], 64), RangeError, "many lines of one message");
  assert.deepEqual(parse([Array.from({ length: 20 }, () => "data: xxxxxxxx\n\n").join("")], 64).length, 20, "small messages pass");
  assert.deepEqual(parse([": " + "c".repeat(100) + "\n".repeat(3) + "data: ok\n\n"], 64), [{ event: "message", data: "ok", id: "" }], "comments are not kept");
});

test("SSE: a stream that sends one endless message (over 16 MiB) is dropped as a lost link, not held in memory", async () => {
  const ctx = sseSetup();
  const source = await sseOnline(ctx);
  const mib = "x".repeat(1 << 20);
  await source.write("data: ");
  for (let i = 0; i < 17 && !source.closed; i++) await source.write(mib);
  assert.equal(source.closed, true, "the client aborted the stream");
  assert.equal(ctx.tg.state, "reconnecting");
  assert.ok(ctx.clock.nextDelay() >= 500, "with backoff");
  assert.deepEqual(ctx.errors, []);
});

test("SSE: the frames header is ASCII (a header value is bytes) and the same JSON", async () => {
  const ctx = sseSetup();
  ctx.tg.subscribe("a.>", () => {}, { filter: { name__icontains: "café 😀 ✓", note: "\u007f\u0080" } });
  await flush();
  const source = ctx.sse.last();
  const header = source.init.headers["X-Telegraphy-Frames"];
  assert.match(header, /^[\x20-\x7e]+$/);
  assert.deepEqual(source.frames[1].filter, { name__icontains: "café 😀 ✓", note: "\u007f\u0080" });
  assert.equal(source.url, "http://gateway.test/sse");
});

test("SSE: a refused stream (HTTP 400) or one that ends without a close event is a lost link: reported, reconnect with backoff", async () => {
  const ctx = sseSetup({ getToken: async () => "tg1.fresh" });
  await flush();
  await ctx.sse.last().refuse(400, "frames: not a JSON array");
  assert.equal(ctx.tg.state, "reconnecting");
  assert.ok(ctx.clock.nextDelay() >= 500);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const second = ctx.sse.last();
  assert.equal(second.frames[0].token, "tg1.first", "never answered: the token was not spent");
  await second.stream();
  await accept(second);
  assert.equal(ctx.tg.state, "connected");
  await second.write(": the end\n\n");
  second._controller.close(); // the response ends, no `event: close`
  await flush();
  assert.equal(second.closed, true);
  assert.equal(ctx.tg.state, "reconnecting");
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.deepEqual(Object.keys(ctx.sse.last().frames[0]).sort(), ["id", "resume", "type"], "the resume token, in the header");
  assert.ok(!ctx.sse.last().url.includes("tg1r"));
});

test("SSE fallback where fetch cannot stream: EventSource with only a connect token in the URL, never a resume token", async () => {
  const es = fakeEventSource();
  let calls = 0;
  const ctx = sseSetup({ token: undefined, ReadableStream: null, EventSource: es.FakeEventSource, getToken: async () => `tg1.fresh${++calls}` });
  ctx.tg.subscribe("h.>", () => {});
  await flush();
  assert.equal(ctx.sse.sources.length, 0, "no fetch stream");
  const source = es.last();
  assert.deepEqual(source.frames.map((f) => f.type), ["connect", "subscribe"]);
  assert.equal(source.frames[0].token, "tg1.fresh1", "a single-use connect token");
  source.stream();
  source.receive({ type: "connected", id: source.frames[0].id, session: "s1", heartbeat: 25, resume: "tg1r.resume", resume_expires_in: 900 });
  source.receive({ type: "subscribed", id: source.frames[1].id, event: "h.>", epoch: "e1", seq: 4 });
  assert.equal(ctx.tg.state, "connected");
  source.fail();
  assert.equal(source.closed, true, "closed before EventSource could retry with the same frames");
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = es.last();
  assert.notEqual(next, source);
  assert.ok(!next.url.includes("tg1r"), next.url);
  assert.deepEqual(next.frames[0], { type: "connect", id: next.frames[0].id, token: "tg1.fresh2" }, "a fresh token instead of the resume");
  assert.deepEqual(next.frames[1].since, { epoch: "e1", seq: 4 }, "history still recovers the missed events");

  // without a token source the client cannot reconnect: it says so
  const sources = fakeEventSource();
  const alone = sseSetup({ ReadableStream: null, EventSource: sources.FakeEventSource });
  await flush();
  const first = sources.last();
  first.stream();
  first.receive({ type: "connected", id: first.frames[0].id, session: "s2", heartbeat: 25, resume: "tg1r.resume2", resume_expires_in: 900 });
  first.fail();
  await alone.clock.advance(alone.clock.nextDelay());
  assert.equal(alone.tg.state, "disconnected");
  assert.equal(alone.errors.at(-1).code, "no_token");
  assert.match(alone.errors.at(-1).message, /EventSource.*resume token.*getToken or tokenUrl/);
});
