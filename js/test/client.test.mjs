// The client's state machine (frames, reconnect, close codes, heartbeats) against an in-process
// fake WebSocket and a manual clock. The same paths run against the real gateway in gateway.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy, TelegraphyError, backoffDelay } from "telegraphy-client";
import { fakeWebSocket, flush, setup, connected, online, answerSubscribes } from "../testkit/fakes.mjs";

test("connect is the first frame, with the token; subscriptions follow `connected`", async () => {
  const ctx = setup();
  ctx.tg.subscribe("shop.order.>", () => {});
  await flush();
  assert.deepEqual(ctx.states, ["connecting"]);
  const socket = ctx.ws.last();
  assert.equal(socket.url, "ws://gateway.test/ws");
  socket.accept();
  assert.deepEqual(socket.sent, [{ type: "connect", id: socket.sent[0].id, token: "tg1.first" }]);
  assert.equal(Number.isInteger(socket.sent[0].id), true);
  connected(socket);
  assert.equal(ctx.tg.state, "connected");
  assert.equal(ctx.tg.node, "gw-1");
  assert.deepEqual(ctx.states, ["connecting", "connected"]);
  const subs = socket.frames("subscribe");
  assert.equal(subs.length, 1);
  assert.equal(subs[0].event, "shop.order.>");
  assert.notEqual(subs[0].id, socket.sent[0].id);
});

test("one subscribe frame per pattern; each handler gets {name, data, sub}", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const a = [];
  const b = [];
  const s1 = ctx.tg.subscribe("shop.order.>", (e) => a.push(e));
  const s2 = ctx.tg.subscribe("shop.order.>", (e) => b.push(e));
  assert.equal(socket.frames("subscribe").length, 0, "sent in a microtask (a chain sends one frame)");
  await flush();
  assert.equal(socket.frames("subscribe").length, 1);
  assert.equal(s1.state, "pending");
  answerSubscribes(socket);
  assert.equal(s1.state, "active");
  await s2.ready();
  socket.receive({ type: "event", sub: "shop.order.>", name: "shop.order.created.42", data: { pk: 42 } });
  assert.deepEqual(a, [{ name: "shop.order.created.42", data: { pk: 42 }, sub: "shop.order.>" }]);
  assert.deepEqual(b, a);
});

test("events are routed by `sub`, and only when the name matches it", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const wide = [];
  const narrow = [];
  ctx.tg.subscribe("shop.>", (e) => wide.push(e.name));
  ctx.tg.subscribe("shop.order.*.42", (e) => narrow.push(e.name));
  await flush();
  answerSubscribes(socket);
  // the gateway sends one frame per matching subscription
  socket.receive({ type: "event", sub: "shop.>", name: "shop.order.created.42", data: {} });
  socket.receive({ type: "event", sub: "shop.order.*.42", name: "shop.order.created.42", data: {} });
  socket.receive({ type: "event", sub: "chat.>", name: "chat.lobby.message", data: {} }); // unknown sub
  socket.receive({ type: "event", sub: "shop.order.*.42", name: "shop.order.created.43", data: {} }); // no match
  assert.deepEqual(wide, ["shop.order.created.42"]);
  assert.deepEqual(narrow, ["shop.order.created.42"]);
  // a frame without `sub` falls back to pattern matching
  socket.receive({ type: "event", name: "shop.order.updated.42", data: {} });
  assert.deepEqual(wide, ["shop.order.created.42", "shop.order.updated.42"]);
  assert.deepEqual(narrow, ["shop.order.created.42", "shop.order.updated.42"]);
});

test("onCreate/onUpdate/onDelete receive model events with app, model, action and key", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const seen = [];
  const sub = ctx.tg
    .subscribe("shop.order.>")
    .onCreate((e) => seen.push(["c", e.key, e.data.pk, e.app, e.model]))
    .onUpdate((e) => seen.push(["u", e.key]))
    .onDelete((e) => seen.push(["d", e.key, e.action]));
  assert.equal(sub.pattern, "shop.order.>");
  await flush();
  answerSubscribes(socket);
  const send = (name, data = {}) => socket.receive({ type: "event", sub: "shop.order.>", name, data });
  send("shop.order.created.42", { pk: 42 });
  send("shop.order.updated.-YSBi");
  send("shop.order.deleted.7");
  send("shop.order.archived.7"); // not a model action
  send("shop.order.created.7.extra"); // the action must be the second last token
  send("shop.order.created.-!"); // not a key token
  assert.deepEqual(seen, [
    ["c", "42", 42, "shop", "order"],
    ["u", "a b"],
    ["d", "7", "deleted"],
  ]);
});

test("model events in an app's own name space: action and key are the last two tokens", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const seen = [];
  ctx.tg.subscribe("demo.mine.7.>").onUpdate((e) => seen.push(e)).onCreate((e) => seen.push(e));
  await flush();
  answerSubscribes(socket);
  socket.receive({ type: "event", sub: "demo.mine.7.>", name: "demo.mine.7.updated.-YSBi", data: { pk: "a b" } });
  socket.receive({ type: "event", sub: "demo.mine.7.>", name: "demo.mine.7.created", data: {} }); // no key
  assert.deepEqual(seen, [
    { name: "demo.mine.7.updated.-YSBi", data: { pk: "a b" }, sub: "demo.mine.7.>", app: null, model: null, scope: "demo.mine.7", action: "updated", key: "a b" },
  ]);
});

test("a throwing handler is reported as an error and does not stop delivery", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  ctx.tg.subscribe("a.>", () => {
    throw new Error("boom");
  });
  ctx.tg.subscribe("a.>", (e) => got.push(e.name));
  await flush();
  answerSubscribes(socket);
  socket.receive({ type: "event", sub: "a.>", name: "a.b", data: 1 });
  assert.deepEqual(got, ["a.b"]);
  assert.equal(ctx.errors.length, 1);
  assert.equal(ctx.errors[0].code, "handler");
  assert.equal(ctx.errors[0].cause.message, "boom");
});

test("unsubscribe stops delivery at once and resolves on `unsubscribed`", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const a = [];
  const b = [];
  const s1 = ctx.tg.subscribe("x.>", (e) => a.push(e.name));
  const s2 = ctx.tg.subscribe("x.>", (e) => b.push(e.name));
  await flush();
  answerSubscribes(socket);
  await s1.unsubscribe(); // another subscription still holds the pattern: no frame
  assert.equal(socket.frames("unsubscribe").length, 0);
  assert.equal(s1.state, "closed");
  socket.receive({ type: "event", sub: "x.>", name: "x.1", data: 1 });
  assert.deepEqual(a, []);
  assert.deepEqual(b, ["x.1"]);
  let done = false;
  const p = s2.unsubscribe().then(() => (done = true));
  const [frame] = socket.frames("unsubscribe");
  assert.deepEqual(frame, { type: "unsubscribe", id: frame.id, event: "x.>" });
  socket.receive({ type: "event", sub: "x.>", name: "x.2", data: 2 }); // in flight before the reply
  await flush();
  assert.equal(done, false);
  socket.receive({ type: "unsubscribed", id: frame.id, event: "x.>" });
  await p;
  assert.deepEqual(b, ["x.1"]);
  await s2.unsubscribe(); // idempotent
  assert.equal(socket.frames("unsubscribe").length, 1);
  // a later reconnect does not bring it back
  socket.serverClose(1000);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  assert.equal(next.frames("subscribe").length, 0);
});

test("subscribe then unsubscribe in the same tick sends nothing", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  await ctx.tg.subscribe("a.*", () => {}).unsubscribe();
  await flush();
  assert.deepEqual(socket.sent.map((f) => f.type), ["connect"]);
});

test("subscribe -> unsubscribe -> subscribe again on the same pattern keeps the new one live", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  const first = ctx.tg.subscribe("a.*", () => {});
  await flush();
  const unsub = first.unsubscribe();
  const second = ctx.tg.subscribe("a.*", (e) => got.push(e.name));
  await flush();
  const [s1, s2] = socket.frames("subscribe");
  const [u] = socket.frames("unsubscribe");
  assert.ok(s1.id < u.id && u.id < s2.id);
  socket.receive({ type: "subscribed", id: s1.id, event: "a.*" });
  socket.receive({ type: "unsubscribed", id: u.id, event: "a.*" });
  await unsub;
  assert.equal(second.state, "pending");
  socket.receive({ type: "subscribed", id: s2.id, event: "a.*" });
  assert.equal(second.state, "active");
  socket.receive({ type: "event", sub: "a.*", name: "a.b", data: null });
  assert.deepEqual(got, ["a.b"]);
});

test("server ping is answered with pong", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  socket.receive({ type: "ping" });
  assert.deepEqual(socket.sent.at(-1), { type: "pong" });
});

test("2 heartbeat intervals without a frame: dead link, close and reconnect", async () => {
  const ctx = setup();
  const socket = await online(ctx, { heartbeat: 1 });
  await ctx.clock.advance(1500);
  socket.receive({ type: "ping" }); // any frame keeps the link alive
  await ctx.clock.advance(1500);
  assert.equal(socket.closedWith, null);
  assert.equal(ctx.tg.state, "connected");
  await ctx.clock.advance(500);
  assert.equal(socket.closedWith.code, 4000);
  assert.equal(ctx.tg.state, "reconnecting");
  assert.equal(ctx.ws.sockets.length, 1);
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(ctx.ws.sockets.length, 2);
});

test("a lost connection reconnects with `resume` and re-subscribes everything", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  ctx.tg.subscribe("a.>", (e) => got.push(e.name));
  ctx.tg.subscribe("b.*", () => {});
  answerSubscribes(socket);
  socket.serverClose(1006);
  assert.equal(ctx.tg.state, "reconnecting");
  const delay = ctx.clock.nextDelay();
  assert.ok(delay >= 500 && delay <= 1000, `first delay ${delay}`);
  await ctx.clock.advance(delay);
  const next = ctx.ws.last();
  assert.notEqual(next, socket);
  next.accept();
  assert.deepEqual(next.sent[0], { type: "connect", id: next.sent[0].id, resume: socket.connectedFrame.resume });
  assert.equal(next.frames("subscribe").length, 0, "nothing before connected");
  connected(next);
  assert.deepEqual(next.frames("subscribe").map((f) => f.event).sort(), ["a.>", "b.*"]);
  answerSubscribes(next);
  next.receive({ type: "event", sub: "a.>", name: "a.1", data: 1 });
  assert.deepEqual(got, ["a.1"]);
  assert.deepEqual(ctx.states, ["connecting", "connected", "reconnecting", "connected"]);
});

test("backoff grows while the gateway is down and resets after `connected`", async () => {
  const ctx = setup({ random: () => 0.999999 });
  await online(ctx);
  const delays = [];
  ctx.ws.last().serverClose(1006);
  for (let i = 0; i < 8; i++) {
    const d = ctx.clock.nextDelay();
    delays.push(d);
    await ctx.clock.advance(d);
    ctx.ws.last().refuse();
  }
  assert.deepEqual(delays, [0, 1, 2, 3, 4, 5, 6, 7].map((n) => backoffDelay(n, () => 0.999999)));
  assert.deepEqual(delays, [999, 1499, 2499, 4499, 8499, 16499, 20000, 20000]);
  assert.equal(ctx.ws.sockets.length, 9);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const socket = ctx.ws.last();
  socket.accept();
  connected(socket);
  socket.serverClose(1000);
  assert.equal(ctx.clock.nextDelay(), 999);
});

test("1012 (node restarting): the first reconnect is immediate, the next ones back off", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  socket.serverClose(1012, "restarting");
  assert.equal(ctx.clock.nextDelay(), 0);
  await ctx.clock.advance(0);
  assert.equal(ctx.ws.sockets.length, 2);
  ctx.ws.last().refuse();
  assert.ok(ctx.clock.nextDelay() >= 500);
});

test("4001 on resume: a fresh token from getToken, at once", async () => {
  let calls = 0;
  const ctx = setup({ getToken: async () => `tg1.fresh${++calls}` });
  const socket = await online(ctx);
  socket.serverClose(1006);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const second = ctx.ws.last();
  second.accept();
  assert.ok(second.sent[0].resume);
  second.receive({ type: "error", id: second.sent[0].id, code: "unauthorized", message: "token refused" });
  second.serverClose(4001);
  assert.equal(ctx.errors.at(-1).code, "unauthorized");
  assert.equal(ctx.clock.nextDelay(), 0);
  await ctx.clock.advance(0);
  const third = ctx.ws.last();
  third.accept();
  assert.deepEqual(third.sent[0], { type: "connect", id: third.sent[0].id, token: "tg1.fresh1" });
  assert.equal(calls, 1);
  connected(third);
  assert.equal(ctx.tg.state, "connected");
});

test("4001 without getToken: state unauthorized, no more attempts", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  socket.serverClose(1006);
  await ctx.clock.advance(ctx.clock.nextDelay());
  ctx.ws.last().accept();
  ctx.ws.last().serverClose(4001);
  assert.equal(ctx.tg.state, "unauthorized");
  assert.equal(ctx.clock.nextDelay(), null);
  assert.equal(ctx.ws.sockets.length, 2);
});

test("4001 on the first token without getToken: unauthorized", async () => {
  const ctx = setup();
  await flush();
  ctx.ws.last().accept();
  ctx.ws.last().serverClose(4001);
  assert.equal(ctx.tg.state, "unauthorized");
  assert.equal(ctx.clock.nextDelay(), null);
});

test("getToken returning null means unauthorized; tokens refused 3 times in a row: unauthorized", async () => {
  const none = setup({ token: undefined, getToken: async () => null });
  await flush();
  assert.equal(none.tg.state, "unauthorized");
  assert.equal(none.ws.sockets.length, 0);

  let calls = 0;
  const bad = setup({ token: undefined, getToken: async () => `tg1.bad${++calls}` });
  for (let i = 0; i < 3; i++) {
    await bad.clock.advance(bad.clock.nextDelay() ?? 0);
    const s = bad.ws.last();
    s.accept();
    assert.equal(s.sent[0].token, `tg1.bad${i + 1}`);
    s.serverClose(4001);
  }
  assert.equal(bad.tg.state, "unauthorized");
  assert.equal(bad.clock.nextDelay(), null);
  assert.equal(calls, 3);
});

test("getToken throwing is reported and retried with backoff", async () => {
  let calls = 0;
  const ctx = setup({
    token: undefined,
    getToken: async () => {
      if (++calls === 1) throw new Error("token endpoint down");
      return "tg1.ok";
    },
  });
  await flush();
  assert.equal(ctx.errors[0].code, "token");
  assert.equal(ctx.ws.sockets.length, 0);
  assert.ok(ctx.clock.nextDelay() >= 500);
  await ctx.clock.advance(ctx.clock.nextDelay());
  ctx.ws.last().accept();
  assert.equal(ctx.ws.last().sent[0].token, "tg1.ok");
});

test("a connect token is reused only until it got an answer", async () => {
  const ctx = setup();
  await flush();
  ctx.ws.last().refuse(); // never opened: token not spent
  await ctx.clock.advance(ctx.clock.nextDelay());
  const s = ctx.ws.last();
  s.accept();
  assert.equal(s.sent[0].token, "tg1.first");
});

test("an expired resume token is not sent: getToken instead", async () => {
  const ctx = setup({ getToken: () => "tg1.new" });
  const socket = await online(ctx, { resume_expires_in: 60 });
  await ctx.clock.advance(40_000);
  socket.receive({ type: "ping" });
  await ctx.clock.advance(40_000);
  socket.receive({ type: "ping" });
  socket.serverClose(1006);
  await ctx.clock.advance(ctx.clock.nextDelay());
  ctx.ws.last().accept();
  assert.deepEqual(Object.keys(ctx.ws.last().sent[0]).sort(), ["id", "token", "type"]);
  assert.equal(ctx.ws.last().sent[0].token, "tg1.new");
});

for (const [code, error] of [
  [4003, "revoked"],
  [1008, "protocol_violation"],
  [1009, "frame_too_big"],
]) {
  test(`close ${code}: stop (disconnected) with an error event`, async () => {
    const ctx = setup();
    const socket = await online(ctx);
    socket.serverClose(code);
    assert.equal(ctx.tg.state, "disconnected");
    assert.equal(ctx.errors.at(-1).code, error);
    assert.equal(ctx.errors.at(-1).closeCode, code);
    assert.ok(ctx.errors.at(-1) instanceof TelegraphyError);
    assert.equal(ctx.clock.nextDelay(), null);
    await ctx.clock.advance(60_000);
    assert.equal(ctx.ws.sockets.length, 1);
  });
}

test("close 4003 with getToken: one fresh token at once (the backend decides); refused -> unauthorized", async () => {
  const given = ["tg1.after-revoke", null];
  const ctx = setup({ getToken: () => given.shift() });
  const socket = await online(ctx, { resume_expires_in: 900 });
  socket.serverClose(4003);
  assert.equal(ctx.tg.state, "reconnecting");
  assert.equal(ctx.clock.nextDelay(), 0, "at once");
  await ctx.clock.advance(0);
  const second = ctx.ws.last();
  second.accept();
  assert.deepEqual(Object.keys(second.sent[0]).sort(), ["id", "token", "type"], "not the revoked resume token");
  assert.equal(second.sent[0].token, "tg1.after-revoke");
  connected(second, { resume_expires_in: 900 });
  assert.equal(ctx.tg.state, "connected");
  second.serverClose(4003); // revoked again (e.g. signed out): the backend gives no token now
  await ctx.clock.advance(0);
  assert.equal(ctx.tg.state, "unauthorized");
  assert.equal(ctx.ws.sockets.length, 2);
});

test("close 4003 twice without a connect in between: stop with revoked", async () => {
  const ctx = setup({ getToken: () => "tg1.again" });
  const socket = await online(ctx);
  socket.serverClose(4003);
  await ctx.clock.advance(0);
  ctx.ws.last().serverClose(4003); // refused before `connected`
  assert.equal(ctx.tg.state, "disconnected");
  assert.equal(ctx.errors.at(-1).code, "revoked");
  await ctx.clock.advance(60_000);
  assert.equal(ctx.ws.sockets.length, 2);
});

test("getToken failing with retryAfterMs (a 429's Retry-After): the next attempt waits at least that long", async () => {
  let calls = 0;
  const ctx = setup({
    token: null,
    minDelay: 100,
    maxDelay: 200,
    getToken: () => {
      calls++;
      if (calls === 1) throw Object.assign(new Error("HTTP 429"), { retryAfterMs: 7000 });
      return "tg1.later";
    },
  });
  await flush();
  assert.equal(ctx.tg.state, "reconnecting");
  assert.equal(ctx.errors.at(-1).code, "token");
  assert.equal(ctx.clock.nextDelay(), 7000, "Retry-After beats the 100-200 ms backoff");
  await ctx.clock.advance(6999);
  assert.equal(calls, 1);
  await ctx.clock.advance(1);
  assert.equal(calls, 2);
  ctx.ws.last().accept();
  assert.equal(ctx.ws.last().sent[0].token, "tg1.later");
});

for (const code of [1000, 1006, 1011, 4008, 4029]) {
  test(`close ${code}: reconnect with backoff`, async () => {
    const ctx = setup();
    const socket = await online(ctx);
    socket.serverClose(code);
    assert.equal(ctx.tg.state, "reconnecting");
    assert.ok(ctx.clock.nextDelay() >= 500);
  });
}

test("close 4029 again and again: each retry waits longer, though `connected` came in between", async () => {
  const ctx = setup({ random: () => 0 });
  let socket = await online(ctx);
  const delays = [];
  for (let i = 0; i < 7; i++) {
    socket.serverClose(4029);
    assert.equal(ctx.tg.state, "reconnecting");
    const d = ctx.clock.nextDelay();
    delays.push(d);
    await ctx.clock.advance(d);
    socket = ctx.ws.last();
    socket.accept();
    connected(socket);
  }
  assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 20000, 20000]);
  socket.serverClose(1006); // another cause: the ordinary backoff again
  assert.equal(ctx.clock.nextDelay(), 500);
});

test("error frames: forbidden fails the subscription (onError, ready() rejects); others still work", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const subErrors = [];
  const bad = ctx.tg.subscribe("admin.>", () => {}, { onError: (e) => subErrors.push(e.code) });
  const good = ctx.tg.subscribe("shop.>", () => {});
  await flush();
  const [fb, fg] = socket.frames("subscribe");
  socket.receive({ type: "error", id: fb.id, code: "forbidden", message: "pattern not allowed" });
  socket.receive({ type: "subscribed", id: fg.id, event: "shop.>" });
  assert.deepEqual(subErrors, ["forbidden"]);
  assert.equal(bad.state, "failed");
  await assert.rejects(bad.ready(), (e) => e.code === "forbidden" && e.event === "admin.>");
  await good.ready();
  assert.equal(ctx.errors.at(-1).code, "forbidden");
  assert.equal(ctx.tg.state, "connected");
});

test("error `internal` on subscribe: retried after a backoff delay", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const sub = ctx.tg.subscribe("a.>", () => {}).onError(() => {});
  await flush();
  socket.receive({ type: "error", id: socket.frames("subscribe")[0].id, code: "internal", message: "try later" });
  assert.equal(sub.state, "pending");
  await ctx.clock.advance(ctx.clock.nextDelay());
  assert.equal(socket.frames("subscribe").length, 2);
  answerSubscribes(socket);
  assert.equal(sub.state, "active");
});

test("connect timeout: a socket without `connected` is given up", async () => {
  const ctx = setup({ connectTimeout: 3000 });
  await flush();
  const socket = ctx.ws.last();
  socket.accept();
  await ctx.clock.advance(3000);
  assert.equal(socket.closedWith.code, 4000);
  assert.equal(ctx.tg.state, "reconnecting");
});

test("unreadable frames are reported, not fatal", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  socket.receive("not json");
  socket.receive({ no: "type" });
  socket.receive({ type: "from-the-future" }); // ignored silently
  assert.deepEqual(ctx.errors.map((e) => e.code), ["bad_frame", "bad_frame"]);
  assert.equal(ctx.tg.state, "connected");
});

test("close(): disconnected, socket closed with 1000, nothing scheduled; connect() resumes", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  ctx.tg.subscribe("a.>", () => {});
  ctx.tg.close();
  assert.equal(ctx.tg.state, "disconnected");
  assert.equal(socket.closedWith.code, 1000);
  await flush();
  assert.equal(ctx.clock.nextDelay(), null);
  ctx.tg.connect();
  await flush();
  const next = ctx.ws.last();
  next.accept();
  assert.ok(next.sent[0].resume);
  connected(next);
  assert.deepEqual(next.frames("subscribe").map((f) => f.event), ["a.>"]);
});

test("close() before the first connect: no socket is ever opened", async () => {
  const ctx = setup();
  ctx.tg.close();
  await flush();
  assert.equal(ctx.ws.sockets.length, 0);
});

test("anonymous: no token and no getToken sends a bare connect", async () => {
  const ctx = setup({ token: undefined });
  await flush();
  ctx.ws.last().accept();
  assert.deepEqual(Object.keys(ctx.ws.last().sent[0]).sort(), ["id", "type"]);
});

test("token null or empty (the page got none): disconnected with no_token, no socket", async () => {
  for (const token of [null, ""]) {
    const ctx = setup({ token });
    await flush();
    assert.equal(ctx.tg.state, "disconnected");
    assert.equal(ctx.errors[0].code, "no_token");
    assert.equal(ctx.ws.sockets.length, 0);
  }
  // ... unless the app can fetch one
  const ctx = setup({ token: null, getToken: () => "tg1.fetched" });
  await flush();
  ctx.ws.last().accept();
  assert.equal(ctx.ws.last().sent[0].token, "tg1.fetched");
});

test("bad arguments are refused", () => {
  const { tg } = setup({ autoConnect: false });
  assert.throws(() => tg.subscribe("a..b", () => {}), TypeError);
  assert.throws(() => tg.subscribe("a.>.b"), TypeError);
  assert.throws(() => tg.subscribe("a", 42), TypeError);
  assert.throws(() => tg.subscribe("a", () => {}, { filter: [1] }), /filter must be an object/);
  assert.throws(() => tg.subscribe("a", () => {}, { exclude: "pk=1" }), /exclude must be an object/);
  assert.throws(() => tg.subscribe("a", () => {}, { name: "has space" }), /invalid subscription name/);
  assert.throws(() => tg.subscribe("a", () => {}, { name: "x".repeat(65) }), /invalid subscription name/);
  assert.throws(() => tg.subscribe("a", () => {}, { since: { epoch: "e", seq: -1 } }), /since/);
  assert.throws(() => tg.subscribe("a", () => {}, { since: { seq: 1 } }), /since/);
  assert.throws(() => new Telegraphy({ WebSocket: class {} }), /url/);
  assert.throws(() => new Telegraphy({ url: "ws://x/ws", WebSocket: null, transports: ["websocket"] }), /WebSocket/);
  assert.throws(() => new Telegraphy({ url: "ws://x/ws", WebSocket: null, fetch: null }), /WebSocket/, "neither transport can work");
});

test("http(s) URLs become ws(s)", () => {
  const { FakeSocket } = fakeWebSocket();
  assert.equal(new Telegraphy({ url: "https://rt.example.com/ws", WebSocket: FakeSocket, autoConnect: false }).url, "wss://rt.example.com/ws");
  assert.equal(new Telegraphy({ url: "http://127.0.0.1:8080/ws", WebSocket: FakeSocket, autoConnect: false }).url, "ws://127.0.0.1:8080/ws");
});

test("fromPage() reads the config script; register() uses one page instance", async (t) => {
  const { FakeSocket, sockets } = fakeWebSocket();
  const config = { url: "ws://page.test/ws", token: "tg1.page" };
  globalThis.document = { getElementById: (id) => (id === "telegraphy-config" ? { textContent: JSON.stringify(config) } : null) };
  const savedWS = globalThis.WebSocket;
  globalThis.WebSocket = FakeSocket;
  t.after(() => {
    delete globalThis.document;
    globalThis.WebSocket = savedWS;
    Telegraphy.page().close();
  });
  const got = [];
  Telegraphy.register("chat.lobby.message", (e) => got.push(e.data));
  Telegraphy.register("chat.lobby.*", () => {});
  assert.equal(Telegraphy.page(), Telegraphy.page());
  await flush();
  assert.equal(sockets.length, 1);
  const socket = sockets[0];
  assert.equal(socket.url, "ws://page.test/ws");
  socket.accept();
  assert.equal(socket.sent[0].token, "tg1.page");
  connected(socket);
  assert.deepEqual(socket.frames("subscribe").map((f) => f.event), ["chat.lobby.message", "chat.lobby.*"]);
  socket.receive({ type: "event", sub: "chat.lobby.message", name: "chat.lobby.message", data: { text: "hi" } });
  assert.deepEqual(got, [{ text: "hi" }]);
  const own = Telegraphy.fromPage({ autoConnect: false });
  assert.notEqual(own, Telegraphy.page());
  assert.equal(own.url, "ws://page.test/ws");
});

test("fromPage() without config explains what is missing", () => {
  globalThis.document = { getElementById: () => null };
  try {
    assert.throws(() => Telegraphy.fromPage(), /telegraphy-config/);
  } finally {
    delete globalThis.document;
  }
});
