// Recovery (PROTOCOL.md section 7) in the client, against the fake socket: the position kept per
// subscription, `since` after a reconnect, duplicates dropped, epochs, and what the app is told.
// The same paths run against the real gateway in recovery.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { flush, setup, connected, online } from "../testkit/fakes.mjs";

const E = "18a6f00000000001";
const E2 = "18a6f00000000002";

function event(socket, sub, name, seq, epoch = E, data = seq) {
  socket.receive({ type: "event", sub, name, data, seq, epoch });
}

/** Subscribe and have the gateway confirm it at position `seq`. */
async function live(ctx, socket, pattern, seq, extra = {}) {
  const got = [];
  const told = [];
  const sub = ctx.tg.subscribe(pattern, (e) => got.push(e.name)).onRecover((r) => told.push(r));
  await flush();
  const frame = socket.frames("subscribe").at(-1);
  assert.equal(frame.since, undefined, "a first subscribe has no since");
  socket.receive({ type: "subscribed", id: frame.id, event: pattern, epoch: E, seq, ...extra });
  return { sub, got, told };
}

/** Lose the connection, reconnect and accept; returns the new socket. */
async function reconnect(ctx, socket, code = 1006) {
  socket.serverClose(code);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  return next;
}

test("the position comes from `subscribed`, then from events; a reconnect subscribes with since", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, got } = await live(ctx, socket, "a.>", 41);
  assert.deepEqual(sub.position, { epoch: E, seq: 41 });
  event(socket, "a.>", "a.1", 44);
  event(socket, "a.>", "a.2", 47);
  assert.deepEqual(got, ["a.1", "a.2"]);
  assert.deepEqual(sub.position, { epoch: E, seq: 47 });
  const next = await reconnect(ctx, socket);
  const [frame] = next.frames("subscribe");
  assert.deepEqual(frame, { type: "subscribe", id: frame.id, event: "a.>", since: { epoch: E, seq: 47 } });
});

test("without any event, the next since is the position `subscribed` gave", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  await live(ctx, socket, "quiet.*", 12);
  const next = await reconnect(ctx, socket);
  assert.deepEqual(next.frames("subscribe")[0].since, { epoch: E, seq: 12 });
});

test("recovered:true: missed events delivered once, in order; the app is told on the subscription and on tg", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, got, told } = await live(ctx, socket, "a.>", 10);
  const global = [];
  ctx.tg.on("recovered", (r) => global.push(r));
  event(socket, "a.>", "a.11", 11);
  const next = await reconnect(ctx, socket);
  const [frame] = next.frames("subscribe");
  assert.deepEqual(frame.since, { epoch: E, seq: 11 });
  next.receive({ type: "subscribed", id: frame.id, event: "a.>", recovered: true, epoch: E, seq: 20 });
  const info = { recovered: true, epoch: E, seq: 20, sub: "a.>", event: "a.>" };
  assert.deepEqual(told, [info]);
  assert.deepEqual(global, [info]);
  assert.equal(sub.state, "active");
  event(next, "a.>", "a.11", 11); // a duplicate the gateway should not send: dropped
  event(next, "a.>", "a.13", 13);
  event(next, "a.>", "a.18", 18);
  event(next, "a.>", "a.18", 18); // again
  event(next, "a.>", "a.15", 15); // behind: dropped
  event(next, "a.>", "a.21", 21);
  assert.deepEqual(got, ["a.11", "a.13", "a.18", "a.21"]);
  assert.deepEqual(sub.position, { epoch: E, seq: 21 });
});

test("after recovered:true the position moves to the answer's only once the replay has arrived (ping barrier)", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub } = await live(ctx, socket, "a.>", 5);
  let next = await reconnect(ctx, socket);
  let [frame] = next.frames("subscribe");
  next.receive({ type: "subscribed", id: frame.id, event: "a.>", recovered: true, epoch: E, seq: 30 });
  event(next, "a.>", "a.9", 9); // replay in progress
  assert.deepEqual(sub.position, { epoch: E, seq: 9 });
  await flush();
  const [ping] = next.frames("ping");
  assert.ok(Number.isInteger(ping.id), "a ping with an id marks the end of what the gateway queued");
  // the socket dies before the rest of the replay: resume after 9, not 30
  next = await reconnect(ctx, next);
  [frame] = next.frames("subscribe");
  assert.deepEqual(frame.since, { epoch: E, seq: 9 });
  next.receive({ type: "subscribed", id: frame.id, event: "a.>", recovered: true, epoch: E, seq: 30 });
  event(next, "a.>", "a.12", 12);
  await flush();
  const [ping2] = next.frames("ping");
  next.receive({ type: "pong", id: ping2.id });
  assert.deepEqual(sub.position, { epoch: E, seq: 30 }, "everything up to 30 has arrived");
  next = await reconnect(ctx, next);
  assert.deepEqual(next.frames("subscribe")[0].since, { epoch: E, seq: 30 });
});

test("one ping for many answers; an unknown pong is ignored", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const a = await live(ctx, socket, "a.>", 1);
  const b = await live(ctx, socket, "b.>", 1);
  const next = await reconnect(ctx, socket);
  for (const f of next.frames("subscribe")) {
    next.receive({ type: "subscribed", id: f.id, event: f.event, recovered: true, epoch: E, seq: 8 });
  }
  next.receive({ type: "pong", id: 424242 });
  await flush();
  assert.equal(next.frames("ping").length, 1);
  next.receive({ type: "pong", id: next.frames("ping")[0].id });
  assert.deepEqual(a.sub.position, { epoch: E, seq: 8 });
  assert.deepEqual(b.sub.position, { epoch: E, seq: 8 });
});

test("recovered:false: the app is told, nothing old is replayed, the position restarts from the answer", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, got, told } = await live(ctx, socket, "a.>", 3);
  event(socket, "a.>", "a.4", 4);
  const next = await reconnect(ctx, socket);
  const [frame] = next.frames("subscribe");
  next.receive({ type: "subscribed", id: frame.id, event: "a.>", recovered: false, epoch: E, seq: 2000 });
  assert.deepEqual(told, [{ recovered: false, epoch: E, seq: 2000, sub: "a.>", event: "a.>" }]);
  assert.deepEqual(sub.position, { epoch: E, seq: 2000 });
  event(next, "a.>", "a.4", 4); // already seen
  event(next, "a.>", "a.2001", 2001);
  assert.deepEqual(got, ["a.4", "a.2001"]);
});

test("a new epoch resets the position: its events pass even with lower sequences", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, got } = await live(ctx, socket, "a.>", 100);
  event(socket, "a.>", "a.101", 101);
  event(socket, "a.>", "a.new1", 1, E2); // the stream was recreated
  event(socket, "a.>", "a.new2", 2, E2);
  event(socket, "a.>", "a.new2", 2, E2);
  assert.deepEqual(got, ["a.101", "a.new1", "a.new2"]);
  assert.deepEqual(sub.position, { epoch: E2, seq: 2 });
  // a reconnect answered in another epoch (recovered:false) starts over there too
  const next = await reconnect(ctx, socket);
  const [frame] = next.frames("subscribe");
  assert.deepEqual(frame.since, { epoch: E2, seq: 2 });
  const E3 = "18a6f00000000003";
  next.receive({ type: "subscribed", id: frame.id, event: "a.>", recovered: false, epoch: E3, seq: 0 });
  event(next, "a.>", "a.e3", 1, E3);
  assert.deepEqual(got.at(-1), "a.e3");
  assert.deepEqual(sub.position, { epoch: E3, seq: 1 });
});

test("a first subscribe: frames the gateway held may be at or below the answer's position and still arrive", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, got, told } = await live(ctx, socket, "a.>", 50);
  event(socket, "a.>", "a.49", 49); // stored between registration and the position read
  event(socket, "a.>", "a.50", 50);
  event(socket, "a.>", "a.51", 51);
  assert.deepEqual(got, ["a.49", "a.50", "a.51"]);
  assert.deepEqual(told, [], "nothing to tell on a first subscribe");
  assert.deepEqual(sub.position, { epoch: E, seq: 51 });
});

test("a gateway without history: events pass, no since, and after a reconnect the app hears recovered:false", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  const told = [];
  const sub = ctx.tg.subscribe("a.>", (e) => got.push(e.name), { onRecover: (r) => told.push(r) });
  await flush();
  socket.receive({ type: "subscribed", id: socket.frames("subscribe")[0].id, event: "a.>" });
  socket.receive({ type: "event", sub: "a.>", name: "a.1", data: 1 });
  socket.receive({ type: "event", sub: "a.>", name: "a.1", data: 1 }); // nothing to tell them apart
  assert.deepEqual(got, ["a.1", "a.1"]);
  assert.equal(sub.position, null);
  const next = await reconnect(ctx, socket);
  const [frame] = next.frames("subscribe");
  assert.equal(frame.since, undefined);
  next.receive({ type: "subscribed", id: frame.id, event: "a.>" });
  assert.deepEqual(told, [{ recovered: false, epoch: null, seq: null, sub: "a.>", event: "a.>" }]);
});

test("recovered:false without a position (history unreachable): the old position is forgotten", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, told } = await live(ctx, socket, "a.>", 7);
  let next = await reconnect(ctx, socket);
  next.receive({ type: "subscribed", id: next.frames("subscribe")[0].id, event: "a.>", recovered: false });
  assert.equal(sub.position, null);
  assert.deepEqual(told.map((r) => r.recovered), [false]);
  next = await reconnect(ctx, next);
  assert.equal(next.frames("subscribe")[0].since, undefined, "no stale since once the app reloaded");
});

test("subscribe(..., {since}) recovers from a position the app saved (e.g. across a page load)", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const told = [];
  const sub = ctx.tg.subscribe("a.>", () => {}, { since: { epoch: E, seq: 99 }, onRecover: (r) => told.push(r) });
  assert.deepEqual(sub.position, { epoch: E, seq: 99 });
  await flush();
  const [frame] = socket.frames("subscribe");
  assert.deepEqual(frame.since, { epoch: E, seq: 99 });
  socket.receive({ type: "subscribed", id: frame.id, event: "a.>", recovered: true, epoch: E, seq: 120 });
  assert.deepEqual(told, [{ recovered: true, epoch: E, seq: 120, sub: "a.>", event: "a.>" }]);
});

test("only subscriptions that were live are told; a listener that throws is reported", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { told } = await live(ctx, socket, "a.>", 1);
  const neverLive = [];
  ctx.tg.subscribe("b.>", () => {}).on("recovered", (r) => neverLive.push(r));
  ctx.tg.on("recovered", () => {
    throw new Error("app bug");
  });
  socket.serverClose(1006); // b.> was never answered
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  const frames = next.frames("subscribe");
  assert.deepEqual(frames.map((f) => [f.event, f.since?.seq]), [["a.>", 1], ["b.>", undefined]]);
  for (const f of frames) next.receive({ type: "subscribed", id: f.id, event: f.event, epoch: E, seq: 5, ...(f.since ? { recovered: true } : {}) });
  assert.deepEqual(told.map((r) => r.recovered), [true]);
  assert.deepEqual(neverLive, []);
  assert.equal(ctx.errors.at(-1).code, "handler");
  assert.throws(() => ctx.tg.subscribe("c.>").on("message", () => {}), /recovered, error/);
});

test("close() then connect() recovers too", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  await live(ctx, socket, "a.>", 3);
  ctx.tg.close();
  ctx.tg.connect();
  await flush();
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  assert.deepEqual(next.frames("subscribe")[0].since, { epoch: E, seq: 3 });
});

test("url list: a random start, then round the list on every new socket; 1012 goes to the next at once", async () => {
  const urls = ["ws://a.test/ws", "https://b.test/ws", "ws://c.test/ws"];
  const ctx = setup({ url: urls, random: () => 0.5 });
  assert.equal(ctx.tg.url, "wss://b.test/ws");
  const socket = await online(ctx);
  assert.equal(socket.url, "wss://b.test/ws");
  socket.serverClose(1012);
  assert.equal(ctx.clock.nextDelay(), 0);
  await ctx.clock.advance(0);
  assert.equal(ctx.ws.last().url, "ws://c.test/ws");
  assert.equal(ctx.tg.url, "ws://c.test/ws");
  ctx.ws.last().refuse();
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.ws.last().url, "ws://a.test/ws");
  const first = setup({ url: urls, random: () => 0 });
  assert.equal(first.tg.url, "ws://a.test/ws");
  const last = setup({ url: urls, random: () => 0.9999999 });
  assert.equal(last.tg.url, "ws://c.test/ws");
});

test("url function: asked before each socket (may be async); a failure is reported and retried with backoff", async () => {
  const asked = [];
  let fail = false;
  const ctx = setup({
    url: async (info) => {
      asked.push(info);
      if (fail) throw new Error("directory down");
      return `http://gw${asked.length}.test/ws`;
    },
  });
  assert.equal(ctx.tg.url, null);
  const socket = await online(ctx);
  assert.equal(socket.url, "ws://gw1.test/ws");
  assert.equal(ctx.tg.url, "ws://gw1.test/ws");
  fail = true;
  socket.serverClose(1006);
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.errors.at(-1).code, "bad_url");
  assert.equal(ctx.ws.sockets.length, 1);
  assert.equal(ctx.tg.state, "reconnecting");
  fail = false;
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.ws.last().url, "ws://gw3.test/ws");
  assert.deepEqual(asked.map((a) => a.attempt), [0, 1, 2]);
  assert.equal(asked[1].previous, "ws://gw1.test/ws");
});

test("a `position` frame moves a quiet subscription's position forward (same epoch, higher seq only)", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const { sub, got } = await live(ctx, socket, "quiet.*", 12);
  socket.receive({ type: "position", sub: "quiet.*", epoch: E, seq: 90 });
  assert.deepEqual(sub.position, { epoch: E, seq: 90 });
  socket.receive({ type: "position", sub: "quiet.*", epoch: E, seq: 50 }); // never backwards
  socket.receive({ type: "position", sub: "quiet.*", epoch: E2, seq: 500 }); // never into another epoch
  socket.receive({ type: "position", sub: "other.*", epoch: E, seq: 700 }); // another subscription
  socket.receive({ type: "position", sub: "quiet.*", epoch: E, seq: "95" }); // malformed
  assert.deepEqual(sub.position, { epoch: E, seq: 90 });
  assert.deepEqual(got, [], "a position is not an event");
  event(socket, "quiet.*", "quiet.a", 91);
  assert.deepEqual(got, ["quiet.a"], "events after the position pass");
  const next = await reconnect(ctx, socket);
  assert.deepEqual(next.frames("subscribe")[0].since, { epoch: E, seq: 91 });
});
