// Presence in the client (PROTOCOL.md section 11) against the fake WebSocket / SSE stream and a manual
// clock: the frames sent, replies matched by id, join/leave routing, re-subscribe after a reconnect,
// errors. The same against the real gateway: presence-gateway.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { fakeFetch, flush, setup, connected, online, answerSubscribes } from "../testkit/fakes.mjs";

const last = (socket, type) => socket.frames(type).at(-1);

test("presence: subscribe sends presence:true, snapshot and stats are matched by id, join/leave reach the handlers", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const seen = [];
  const sub = ctx.tg
    .subscribe("chat.lobby", () => {}, { presence: true })
    .on("join", (m) => seen.push(["join", m]))
    .on("leave", (m) => seen.push(["leave", m]));
  const plain = ctx.tg.subscribe("chat.lobby", () => {}); // a separate gateway subscription, not present
  await flush();
  const [subscribe, other] = socket.frames("subscribe");
  assert.deepEqual(subscribe, { type: "subscribe", id: subscribe.id, event: "chat.lobby", presence: true });
  assert.equal(other.presence, undefined);
  assert.equal(other.sub, "chat.lobby:1", "named: the pattern's name is the presence one's");

  const snapshot = sub.presence();
  const stats = sub.presenceStats();
  await flush();
  assert.equal(socket.frames("presence").length, 0, "asked only after `subscribed`");
  for (const f of socket.frames("subscribe")) socket.receive({ type: "subscribed", id: f.id, event: f.event, ...(f.sub && { sub: f.sub }) });
  await flush();
  const ask = last(socket, "presence");
  const askStats = last(socket, "presence_stats");
  assert.deepEqual(ask, { type: "presence", id: ask.id, event: "chat.lobby" });
  assert.deepEqual(askStats, { type: "presence_stats", id: askStats.id, event: "chat.lobby" });
  assert.notEqual(ask.id, askStats.id);
  // answered out of order: matched by id
  socket.receive({ type: "presence_stats", id: askStats.id, event: "chat.lobby", clients: 2, users: 1 });
  const alice = { client: "q0P3aaaaaaaaaaaa", user: "alice", info: { name: "Alice" } };
  socket.receive({ type: "presence", id: ask.id, event: "chat.lobby", clients: [alice, { client: "r1", user: "" }], truncated: false });
  assert.deepEqual(await stats, { clients: 2, users: 1 });
  assert.deepEqual(await snapshot, { clients: [alice, { client: "r1", user: "" }], truncated: false });

  socket.receive({ type: "join", sub: "chat.lobby", client: "b2", user: "bob", info: { name: "Bob" } });
  socket.receive({ type: "join", sub: "chat.lobby:1", client: "x", user: "x" }); // not a presence subscription
  socket.receive({ type: "leave", sub: "chat.lobby", client: "b2", user: "bob" });
  assert.deepEqual(seen, [
    ["join", { client: "b2", user: "bob", info: { name: "Bob" } }],
    ["leave", { client: "b2", user: "bob" }],
  ]);
  plain.unsubscribe();
  assert.deepEqual(ctx.errors, []);
});

test("presence: only on a channel without wildcards; presence() of a plain subscription rejects", async () => {
  const ctx = setup();
  await online(ctx);
  assert.throws(() => ctx.tg.subscribe("chat.>", () => {}, { presence: true }), /without wildcards/);
  assert.throws(() => ctx.tg.subscribe("chat.lobby", () => {}, { presence: "yes" }), /boolean/);
  const plain = ctx.tg.subscribe("chat.lobby", () => {});
  await assert.rejects(plain.presence(), (e) => e.code === "bad_request");
  assert.throws(() => plain.on("typing", () => {}), /join, leave/);
});

test("presence: error frames reject the request (forbidden, limit_exceeded), the subscription stays live", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const sub = ctx.tg.subscribe("chat.lobby", () => {}, { presence: true });
  await flush();
  answerSubscribes(socket);
  const a = sub.presence();
  const b = sub.presenceStats();
  await flush();
  socket.receive({ type: "error", id: last(socket, "presence").id, code: "forbidden", message: "no presence subscription" });
  socket.receive({ type: "error", id: last(socket, "presence_stats").id, code: "limit_exceeded", message: "too many requests" });
  await assert.rejects(a, (e) => e.code === "forbidden" && e.message === "no presence subscription" && e.event === "chat.lobby");
  await assert.rejects(b, (e) => e.code === "limit_exceeded");
  assert.equal(sub.state, "active");
  assert.deepEqual(ctx.errors, [], "the promise carries the error");
});

test("presence: a refused presence subscribe (bad_request) fails the subscription and its requests", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const sub = ctx.tg.subscribe("chat.lobby", () => {}, { presence: true });
  const ask = sub.presence();
  await flush();
  socket.receive({ type: "error", id: last(socket, "subscribe").id, code: "bad_request", message: "presence is off" });
  await assert.rejects(ask, (e) => e.code === "bad_request" && e.message === "presence is off");
  assert.equal(sub.state, "failed");
});

test("presence: a request pending when the connection drops rejects; the re-subscribe keeps presence:true", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const joins = [];
  const sub = ctx.tg.subscribe("chat.lobby", () => {}, { presence: true }).on("join", (m) => joins.push(m.user));
  await flush();
  answerSubscribes(socket);
  const ask = sub.presence();
  await flush();
  assert.equal(socket.frames("presence").length, 1);
  socket.serverClose(1006);
  await assert.rejects(ask, (e) => e.code === "disconnected");
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  const [again] = next.frames("subscribe");
  assert.deepEqual(again, { type: "subscribe", id: again.id, event: "chat.lobby", presence: true });
  const stats = sub.presenceStats();
  answerSubscribes(next);
  await flush();
  next.receive({ type: "presence_stats", id: last(next, "presence_stats").id, event: "chat.lobby", clients: 1, users: 1 });
  assert.deepEqual(await stats, { clients: 1, users: 1 });
  next.receive({ type: "join", sub: "chat.lobby", client: "c", user: "carol" });
  assert.deepEqual(joins, ["carol"]);
});

test("presence over SSE: presence:true in the opening frames, requests by POST, replies on the stream", async () => {
  const http = fakeFetch(202);
  const ctx = setup({ transports: ["sse"], fetch: http.fetch });
  const sub = ctx.tg.subscribe("chat.lobby", () => {}, { presence: true });
  await flush();
  const source = http.last();
  const [connect, subscribe] = source.frames;
  assert.deepEqual(subscribe, { type: "subscribe", id: subscribe.id, event: "chat.lobby", presence: true });
  await source.stream();
  await source.receive({ type: "connected", id: connect.id, session: "s1", node: "gw-1", heartbeat: 25, resume: "tg1r.r", resume_expires_in: 900 });
  await source.receive({ type: "subscribed", id: subscribe.id, event: "chat.lobby" });
  const snapshot = sub.presence();
  await flush();
  await flush();
  const posted = http.posts.flatMap((p) => (Array.isArray(p.body) ? p.body : [p.body])).filter((f) => f.type === "presence");
  assert.equal(posted.length, 1);
  assert.deepEqual(posted[0], { type: "presence", id: posted[0].id, event: "chat.lobby" });
  await source.receive({ type: "presence", id: posted[0].id, event: "chat.lobby", clients: [], truncated: true });
  assert.deepEqual(await snapshot, { clients: [], truncated: true });
});

test("presence_paused / presence_resumed: {clients} to the handlers, presencePaused in between, join/leave around them", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const seen = [];
  const record = (type) => (arg) => seen.push([type, arg]);
  const sub = ctx.tg
    .subscribe("chat.lobby", () => {}, { presence: true })
    .on("join", record("join"))
    .on("leave", record("leave"))
    .on("presence_paused", record("paused"))
    .on("presence_resumed", record("resumed"));
  const twin = ctx.tg.subscribe("chat.lobby", () => {}, { presence: true }).on("presence_paused", record("twin paused")); // shares the entry
  const plain = ctx.tg.subscribe("chat.other", () => {});
  await flush();
  answerSubscribes(socket);
  assert.equal(sub.presencePaused, false);
  assert.throws(() => sub.on("presence_paused", "fn"), /takes a function/);

  socket.receive({ type: "join", sub: "chat.lobby", client: "a", user: "alice" });
  socket.receive({ type: "presence_paused", sub: "chat.lobby", clients: 1001 });
  assert.equal(sub.presencePaused, true);
  assert.equal(twin.presencePaused, true, "one gateway subscription, one flag");
  socket.receive({ type: "presence_paused", sub: "chat.other", clients: 5 }); // not a presence subscription
  socket.receive({ type: "presence_paused", sub: "chat.nope", clients: 5 }); // no such name
  socket.receive({ type: "presence_resumed", sub: "chat.lobby" }); // malformed: no count
  socket.receive({ type: "presence_resumed", sub: "chat.lobby", clients: -1 });
  assert.equal(sub.presencePaused, true, "malformed frames are dropped");
  assert.equal(plain.presencePaused, false);
  socket.receive({ type: "presence_resumed", sub: "chat.lobby", clients: 900 });
  assert.equal(sub.presencePaused, false);
  socket.receive({ type: "leave", sub: "chat.lobby", client: "a", user: "alice" });
  assert.deepEqual(seen, [
    ["join", { client: "a", user: "alice" }],
    ["paused", { clients: 1001 }],
    ["twin paused", { clients: 1001 }],
    ["resumed", { clients: 900 }],
    ["leave", { client: "a", user: "alice" }],
  ]);
  assert.equal(socket.frames("presence").length, 0, "no snapshot of its own on presence_resumed: the app asks");

  twin.unsubscribe();
  socket.receive({ type: "presence_paused", sub: "chat.lobby", clients: 1002 });
  assert.equal(seen.filter(([t]) => t === "twin paused").length, 1, "a closed handle hears nothing");
  socket.receive({ type: "presence_stopped", sub: "chat.lobby", clients: 3 }); // a later protocol's frame: ignored
  assert.equal(sub.presencePaused, true);
  assert.deepEqual(ctx.errors, []);
});

test("presencePaused resets on a lost connection; the gateway's presence_paused after the re-subscribe sets it again", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const paused = [];
  const recovered = [];
  const sub = ctx.tg
    .subscribe("chat.lobby", () => {}, { presence: true })
    .on("presence_paused", ({ clients }) => paused.push(clients))
    .on("recovered", () => recovered.push(sub.presencePaused));
  await flush();
  answerSubscribes(socket);
  socket.receive({ type: "presence_paused", sub: "chat.lobby", clients: 3 });
  assert.equal(sub.presencePaused, true);
  socket.serverClose(1006);
  assert.equal(sub.presencePaused, false, "nothing is paused without a connection");

  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  answerSubscribes(next);
  assert.deepEqual(recovered, [false], "at `recovered` the new connection has not paused it");
  next.receive({ type: "presence_paused", sub: "chat.lobby", clients: 4 });
  assert.equal(sub.presencePaused, true);
  assert.deepEqual(paused, [3, 4]);

  // and a channel below the bound after the reconnect stays unpaused (the gateway sends nothing)
  next.serverClose(1006);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const third = ctx.ws.last();
  third.accept();
  connected(third);
  answerSubscribes(third);
  assert.equal(sub.presencePaused, false);
  assert.deepEqual(recovered, [false, false]);
});

// The gateway's byte-exact frames (proto/vectors/frames.json, shared with the gateway) as the client reads them.
const FRAMES = new URL("../../proto/vectors/frames.json", import.meta.url);
const pauseVectors = existsSync(FRAMES) ? JSON.parse(readFileSync(FRAMES, "utf8")).server.filter((v) => v.frame === "presence_paused" || v.frame === "presence_resumed") : [];

test("presence_paused / presence_resumed vectors reach the handlers of the subscription they name", { skip: pauseVectors.length === 0 && "no presence_paused vectors in this tree" }, async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const seen = [];
  const sub = ctx.tg.subscribe("chat.lobby", () => {}, { presence: true });
  for (const type of ["presence_paused", "presence_resumed"]) sub.on(type, (info) => seen.push([type, info, sub.presencePaused]));
  await flush();
  answerSubscribes(socket);
  assert.deepEqual(pauseVectors.map((v) => v.frame).sort(), ["presence_paused", "presence_resumed"]);
  for (const v of pauseVectors) {
    assert.equal(v.sub, "chat.lobby");
    socket.receive(v.text);
  }
  assert.deepEqual(seen, pauseVectors.map((v) => [v.frame, { clients: v.clients }, v.frame === "presence_paused"]));
});
