// Named and filtered subscriptions (PROTOCOL.md section 8) in the client, against the fake socket:
// the frames it sends, routing by name, the chain API, replace semantics, unsubscribe by name.
// The gateway evaluates filters; the client only checks their shape. The same paths run against the
// real gateway in filters-gateway.test.mjs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { checkConditions, validateSubName } from "telegraphy-client";
import { flush, setup, online, connected } from "../testkit/fakes.mjs";

/** The gateway's answer to a subscribe frame (echoing `sub` as section 8 says). */
function answer(socket, frame, extra = {}) {
  socket.receive({ type: "subscribed", id: frame.id, event: frame.event, ...(frame.sub ? { sub: frame.sub } : {}), ...extra });
}

test("filter, exclude and name go in the subscribe frame; events are routed by the name", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const big = [];
  const all = [];
  const sub = ctx.tg.subscribe("shop.order.>", (e) => big.push(e), {
    filter: { customer__id: 7, total__gte: 100 },
    exclude: { status__in: ["cancelled", "refunded"] },
    name: "big-orders",
  });
  ctx.tg.subscribe("shop.order.>", (e) => all.push(e.name));
  assert.equal(sub.name, "big-orders");
  await flush();
  const [named, plain] = socket.frames("subscribe");
  assert.deepEqual(named, {
    type: "subscribe",
    id: named.id,
    event: "shop.order.>",
    sub: "big-orders",
    filter: { customer__id: 7, total__gte: 100 },
    exclude: { status__in: ["cancelled", "refunded"] },
  });
  assert.deepEqual(plain, { type: "subscribe", id: plain.id, event: "shop.order.>" }, "a plain pattern is not named");
  answer(socket, named);
  answer(socket, plain);
  assert.equal(sub.state, "active");
  socket.receive({ type: "event", sub: "big-orders", name: "shop.order.created.1", data: { total: 500 } });
  socket.receive({ type: "event", sub: "shop.order.>", name: "shop.order.created.1", data: { total: 500 } });
  socket.receive({ type: "event", sub: "shop.order.>", name: "shop.order.created.2", data: { total: 5 } });
  assert.deepEqual(big, [{ name: "shop.order.created.1", data: { total: 500 }, sub: "big-orders" }]);
  assert.deepEqual(all, ["shop.order.created.1", "shop.order.created.2"]);
});

test("the chain subscribe().filter().exclude() in one tick sends one frame with the merged conditions", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const sub = ctx.tg
    .subscribe("shop.order.>", () => {})
    .filter({ customer__id: 7 })
    .filter({ total__gte: 100 })
    .exclude({ status: "cancelled" });
  await flush();
  const frames = socket.frames("subscribe");
  assert.equal(frames.length, 1);
  assert.deepEqual(frames[0], {
    type: "subscribe",
    id: frames[0].id,
    event: "shop.order.>",
    sub: "shop.order.>",
    filter: { customer__id: 7, total__gte: 100 },
    exclude: { status: "cancelled" },
  });
  assert.deepEqual(sub.filters, { filter: { customer__id: 7, total__gte: 100 }, exclude: { status: "cancelled" } });
});

test("filter() later re-sends under the same name (replace); ready() waits for the new answer", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  const sub = ctx.tg.subscribe("a.>", (e) => got.push(e.data), { filter: { x: 1 }, name: "mine" });
  await flush();
  answer(socket, socket.frames("subscribe")[0], { epoch: "e", seq: 4 });
  await sub.ready();
  sub.filter({ x: 2, y__lt: 3 });
  assert.equal(sub.state, "pending");
  let ready = false;
  const p = sub.ready().then(() => (ready = true));
  await flush();
  const second = socket.frames("subscribe")[1];
  assert.deepEqual(second, { type: "subscribe", id: second.id, event: "a.>", sub: "mine", filter: { x: 2, y__lt: 3 } });
  assert.equal(second.since, undefined, "a replace on a live subscription needs no recovery");
  socket.receive({ type: "event", sub: "mine", name: "a.b", data: "old filter, still live" });
  assert.equal(ready, false);
  answer(socket, second, { epoch: "e", seq: 9 });
  await p;
  socket.receive({ type: "event", sub: "mine", name: "a.b", data: "new filter" });
  assert.deepEqual(got, ["new filter"], "a frame before the new answer was matched by the old filter: dropped");
  sub.filter({ x: 2 }); // no change: nothing sent
  sub.filter({});
  await flush();
  assert.equal(socket.frames("subscribe").length, 2);
  assert.equal(socket.frames("unsubscribe").length, 0);
});

test("setFilters replaces filter and exclude in one frame under the name; old-filter frames before the answer are dropped; the position starts over", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  const told = [];
  const sub = ctx.tg.subscribe("shop.order.>", (e) => got.push(e.data.pk), {
    filter: { customer__id: 7 },
    exclude: { status: "cancelled" },
    name: "orders",
    onRecover: (info) => told.push(info),
  });
  await flush();
  answer(socket, socket.frames("subscribe")[0], { epoch: "e", seq: 4 });
  socket.receive({ type: "event", sub: "orders", name: "shop.order.created.1", data: { pk: 1 }, epoch: "e", seq: 6 });
  assert.deepEqual(sub.position, { epoch: "e", seq: 6 });

  const swapped = sub.setFilters({ filter: { total__gte: 100 } });
  assert.ok(swapped instanceof Promise);
  assert.deepEqual(sub.filters, { filter: { total__gte: 100 }, exclude: null }, "both replaced, not merged");
  assert.equal(sub.state, "pending");
  assert.equal(sub.position, null, "the old filter's position is not this one's");
  await flush();
  const frames = socket.frames("subscribe");
  assert.equal(frames.length, 2);
  assert.deepEqual(frames[1], { type: "subscribe", id: frames[1].id, event: "shop.order.>", sub: "orders", filter: { total__gte: 100 } });
  assert.equal(socket.frames("unsubscribe").length, 0, "one frame: no unsubscribe");
  // queued by the gateway before it replaced the subscription: matched by the old filter
  socket.receive({ type: "event", sub: "orders", name: "shop.order.created.2", data: { pk: 2 }, epoch: "e", seq: 8 });
  answer(socket, frames[1], { epoch: "e", seq: 9 });
  await swapped;
  assert.equal(sub.state, "active");
  assert.deepEqual(sub.position, { epoch: "e", seq: 9 }, "from the new answer");
  // a held live frame of the new filter may be below the answer's position (section 7): delivered
  socket.receive({ type: "event", sub: "orders", name: "shop.order.created.3", data: { pk: 3 }, epoch: "e", seq: 7 });
  socket.receive({ type: "event", sub: "orders", name: "shop.order.created.4", data: { pk: 4 }, epoch: "e", seq: 10 });
  assert.deepEqual(got, [1, 3, 4]);
  assert.deepEqual(sub.position, { epoch: "e", seq: 10 });
  assert.deepEqual(told, [], "a replacement is not a recovery");

  // the same filters again: nothing sent, resolves at once; {} (or no argument) clears both
  await sub.setFilters({ filter: { total__gte: 100 } });
  await sub.setFilters({ exclude: undefined, filter: { total__gte: 100 } });
  assert.equal(socket.frames("subscribe").length, 2);
  const cleared = sub.setFilters();
  await flush();
  const last = socket.frames("subscribe")[2];
  assert.deepEqual(last, { type: "subscribe", id: last.id, event: "shop.order.>", sub: "orders" }, "still under its name");
  assert.deepEqual(sub.filters, { filter: null, exclude: null });
  answer(socket, last);
  await cleared;
  assert.deepEqual(ctx.errors, []);
});

test("setFilters: a swap during a swap, a refused swap, a swap while offline, and what it refuses", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const got = [];
  const told = [];
  const sub = ctx.tg.subscribe("a.>", (e) => got.push(e.data), { filter: { k: 1 }, name: "n", onRecover: (i) => told.push(i.recovered) });
  await flush();
  answer(socket, socket.frames("subscribe")[0], { epoch: "e", seq: 1 });

  // k=2 then k=3 before the gateway answered: only the answer to the last one counts
  const two = sub.setFilters({ filter: { k: 2 } });
  await flush();
  const three = sub.setFilters({ filter: { k: 3 } });
  await flush();
  const [, f2, f3] = socket.frames("subscribe");
  assert.deepEqual([f2.filter, f3.filter], [{ k: 2 }, { k: 3 }]);
  answer(socket, f2, { epoch: "e", seq: 2 });
  socket.receive({ type: "event", sub: "n", name: "a.b", data: "k=2", epoch: "e", seq: 3 });
  answer(socket, f3, { epoch: "e", seq: 3 });
  await Promise.all([two, three]);
  socket.receive({ type: "event", sub: "n", name: "a.b", data: "k=3", epoch: "e", seq: 4 });
  assert.deepEqual(got, ["k=3"]);

  // refused: ready() rejects, and the old filter's frames (the gateway keeps it) never reach the handler
  const refused = sub.setFilters({ filter: { name__regex: "(" } });
  await flush();
  socket.receive({ type: "error", id: socket.frames("subscribe")[3].id, code: "bad_request", message: "bad regex" });
  await assert.rejects(refused, (e) => e.code === "bad_request");
  assert.equal(sub.state, "failed");
  socket.receive({ type: "event", sub: "n", name: "a.b", data: "k=3 after the refusal", epoch: "e", seq: 5 });
  assert.deepEqual(got, ["k=3"]);

  // offline: the next connection subscribes the new filters, without since, and tells no recovery
  socket.serverClose(1006);
  const offline = sub.setFilters({ filter: { k: 4 } });
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  const [again] = next.frames("subscribe");
  assert.deepEqual(again, { type: "subscribe", id: again.id, event: "a.>", sub: "n", filter: { k: 4 } });
  answer(next, again, { epoch: "e", seq: 9 });
  await offline;
  assert.deepEqual(told, []);
  next.receive({ type: "event", sub: "n", name: "a.b", data: "k=4", epoch: "e", seq: 10 });
  assert.deepEqual(got, ["k=3", "k=4"]);

  // what it refuses, before sending anything
  assert.throws(() => sub.setFilters({ k: 5 }), TypeError, "conditions instead of {filter, exclude}");
  assert.throws(() => sub.setFilters({ filter: { a__in: 1 } }), TypeError);
  assert.throws(() => sub.setFilters([]), TypeError);
  await flush();
  assert.equal(next.frames("subscribe").length, 1);
  void sub.unsubscribe(); // resolves on the gateway's answer, not needed here
  await assert.rejects(sub.setFilters({}), (e) => e.code === "closed");
});

test("same pattern, different filters, no names: one subscription each, distinct names, separate events", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const seven = [];
  const eight = [];
  const s7 = ctx.tg.subscribe("shop.order.>", (e) => seven.push(e.data.pk), { filter: { customer__id: 7 } });
  const s8 = ctx.tg.subscribe("shop.order.>", (e) => eight.push(e.data.pk), { filter: { customer__id: 8 } });
  const again = ctx.tg.subscribe("shop.order.>", () => {}, { filter: { customer__id: 7 } });
  assert.equal(s7.name, "shop.order.>");
  assert.match(s8.name, /^shop\.order\.>:\d+$/);
  assert.equal(again.name, s7.name, "same pattern and filters share one");
  await flush();
  const frames = socket.frames("subscribe");
  assert.deepEqual(frames.map((f) => [f.sub, f.filter]), [
    [s7.name, { customer__id: 7 }],
    [s8.name, { customer__id: 8 }],
  ]);
  for (const f of frames) answer(socket, f);
  socket.receive({ type: "event", sub: s8.name, name: "shop.order.created.2", data: { pk: 2 } });
  socket.receive({ type: "event", sub: s7.name, name: "shop.order.created.1", data: { pk: 1 } });
  assert.deepEqual(seven, [1]);
  assert.deepEqual(eight, [2]);
});

test("filter() on a handle sharing an unnamed subscription moves it to its own; the others keep theirs", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const a = [];
  const b = [];
  const sa = ctx.tg.subscribe("x.>", (e) => a.push(e.name));
  const sb = ctx.tg.subscribe("x.>", (e) => b.push(e.name));
  await flush();
  answer(socket, socket.frames("subscribe")[0]);
  sb.filter({ n__gt: 1 });
  assert.notEqual(sb.name, sa.name);
  assert.equal(sa.name, "x.>");
  assert.equal(sb.state, "pending");
  await flush();
  const moved = socket.frames("subscribe")[1];
  assert.deepEqual(moved, { type: "subscribe", id: moved.id, event: "x.>", sub: sb.name, filter: { n__gt: 1 } });
  assert.equal(socket.frames("unsubscribe").length, 0, "x.> still has a handle");
  answer(socket, moved);
  await sb.ready();
  socket.receive({ type: "event", sub: "x.>", name: "x.1", data: { n: 1 } });
  socket.receive({ type: "event", sub: sb.name, name: "x.2", data: { n: 2 } });
  assert.deepEqual(a, ["x.1"]);
  assert.deepEqual(b, ["x.2"]);
  // the last handle of x.> narrows too: it keeps its name, replaced in place
  sa.filter({ n: 1 });
  await flush();
  assert.deepEqual(socket.frames("subscribe")[2].sub, "x.>");
  assert.equal(socket.frames("unsubscribe").length, 0);
});

test("unsubscribe: a named subscription by `sub`, a plain pattern by `event`", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const named = ctx.tg.subscribe("a.>", () => {}, { filter: { k: 1 }, name: "n1" });
  const plain = ctx.tg.subscribe("a.>", () => {});
  await flush();
  for (const f of socket.frames("subscribe")) answer(socket, f);
  const p1 = named.unsubscribe();
  const p2 = plain.unsubscribe();
  const [u1, u2] = socket.frames("unsubscribe");
  assert.deepEqual(u1, { type: "unsubscribe", id: u1.id, sub: "n1" });
  assert.deepEqual(u2, { type: "unsubscribe", id: u2.id, event: "a.>" });
  socket.receive({ type: "unsubscribed", id: u1.id, sub: "n1" });
  socket.receive({ type: "unsubscribed", id: u2.id, event: "a.>" });
  await Promise.all([p1, p2]);
  socket.receive({ type: "event", sub: "n1", name: "a.b", data: { k: 1 } }); // late: no handler left, no error
  assert.deepEqual(ctx.errors, []);
});

test("names: the same name shares with the same pattern and filters, and is refused otherwise", async () => {
  const ctx = setup({ autoConnect: false });
  const s1 = ctx.tg.subscribe("a.>", () => {}, { name: "n", filter: { x: 1, y: [1, { b: 2, a: 1 }] } });
  const s2 = ctx.tg.subscribe("a.>", () => {}, { name: "n", filter: { y: [1, { a: 1, b: 2 }], x: 1 } });
  assert.equal(s1.name, s2.name);
  assert.throws(() => ctx.tg.subscribe("b.>", () => {}, { name: "n", filter: { x: 1, y: [1, { a: 1, b: 2 }] } }), /in use/);
  assert.throws(() => ctx.tg.subscribe("a.>", () => {}, { name: "n", filter: { x: 2 } }), /in use/);
  // a long pattern cannot be its own name once it must be sent: a generated one
  const long = `${"x".repeat(70)}.>`;
  const s3 = ctx.tg.subscribe(long, () => {}, { filter: { x: 1 } });
  assert.match(s3.name, /^tg:\d+$/);
  assert.equal(ctx.tg.subscribe(long, () => {}).name, long, "a plain long pattern is never sent as a name");
});

test("reconnect: filters are sent again with the name and since", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  ctx.tg.subscribe("a.>", () => {}, { filter: { k: 1 }, name: "n" });
  await flush();
  answer(socket, socket.frames("subscribe")[0], { epoch: "e", seq: 3 });
  socket.receive({ type: "event", sub: "n", name: "a.b", data: { k: 1 }, epoch: "e", seq: 5 });
  socket.serverClose(1006);
  await ctx.clock.advance(ctx.clock.nextDelay());
  const next = ctx.ws.last();
  next.accept();
  connected(next);
  const [frame] = next.frames("subscribe");
  assert.deepEqual(frame, { type: "subscribe", id: frame.id, event: "a.>", sub: "n", filter: { k: 1 }, since: { epoch: "e", seq: 5 } });
});

test("a gateway that does not echo the name (before section 8) fails the subscription: unsupported", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const codes = [];
  const sub = ctx.tg.subscribe("a.>", () => {}, { filter: { k: 1 }, onError: (e) => codes.push(e.code) });
  await flush();
  const [frame] = socket.frames("subscribe");
  socket.receive({ type: "subscribed", id: frame.id, event: "a.>" }); // ignored sub and filter
  assert.equal(sub.state, "failed");
  assert.deepEqual(codes, ["unsupported"]);
  await assert.rejects(sub.ready(), (e) => e.code === "unsupported");
  const [undo] = socket.frames("unsubscribe");
  assert.deepEqual(undo, { type: "unsubscribe", id: undo.id, event: "a.>" }, "drop what the old gateway subscribed");
});

test("a filter refused by the gateway (bad_request) fails that subscription only", async () => {
  const ctx = setup();
  const socket = await online(ctx);
  const bad = ctx.tg.subscribe("a.>", () => {}, { filter: { name__regex: "(" } });
  await flush();
  socket.receive({ type: "error", id: socket.frames("subscribe")[0].id, code: "bad_request", message: "bad regex" });
  await assert.rejects(bad.ready(), (e) => e.code === "bad_request");
  bad.filter({ name__regex: "^a" }); // a fix re-sends it
  assert.equal(bad.state, "pending");
  await flush();
  const [, again] = socket.frames("subscribe");
  assert.deepEqual(again.filter, { name__regex: "^a" });
  answer(socket, again);
  await bad.ready();
});

test("shape checks: what section 8 names as a wrong shape throws before anything is sent", () => {
  const ok = [
    { customer__id: 7 },
    { status__in: [] },
    { total__range: [1, "9.50"] },
    { deleted__isnull: false },
    { name__iregex: "^a" },
    { in: 5 }, // a field called "in"
    { data__exact: { nested: [1] } },
    { price: null },
    { name__iexact: null },
    { total__lte: "2026-11-26T10:00:00Z" },
    { total__year: 2026 }, // not a lookup: the field "year" of "total"
  ];
  for (const c of ok) assert.equal(checkConditions(c), c, JSON.stringify(c));
  assert.equal(checkConditions({}), null);
  assert.equal(checkConditions(undefined), null);
  const bad = [
    [[], /must be an object/],
    ["x=1", /must be an object/],
    [{ status__in: "new" }, /a list/],
    [{ total__range: [1] }, /\[low, high\]/],
    [{ deleted__isnull: "yes" }, /true or false/],
    [{ name__regex: 5 }, /a string/],
    [{ name__icontains: 5 }, /a string/],
    [{ name__startswith: null }, /a string/],
    [{ name__iexact: 1 }, /a string or null/],
    [{ total__gte: null }, /a number or a string/],
    [{ total__lt: true }, /a number or a string/],
    [{ total__gt: NaN }, /a number or a string/],
    [{ total__range: [1, null] }, /numbers or strings/],
    [{ "": 1 }, /empty field/],
    [{ a____b: 1 }, /empty field/],
    [{ a__: 1 }, /empty field/],
    [{ a: undefined }, /JSON value/],
    [{ a: () => 1 }, /JSON value/],
  ];
  for (const [c, why] of bad) assert.throws(() => checkConditions(c, "filter"), why, JSON.stringify(c));
  const { tg } = setup({ autoConnect: false });
  assert.throws(() => tg.subscribe("a.>", () => {}).filter({ x__in: 1 }), /a list/);
  assert.throws(() => tg.subscribe("a.>", () => {}).exclude(null).exclude([]), /exclude must be an object/);
});

test("subscription names: 1..64 characters of [A-Za-z0-9_.:*>-]", () => {
  for (const n of ["big-orders", "shop.order.>", "a:1", "*", "x".repeat(64)]) assert.equal(validateSubName(n), true, n);
  for (const n of ["", "x".repeat(65), "a b", "é", "a/b", 7, null]) assert.equal(validateSubName(n), false, String(n));
});

// proto/vectors/filters.json, shared with the gateway. The client checks shapes and the fixed limits: it
// must accept every case, refuse every error of kind not_object, bad_key, bad_value, too_many_values,
// regex_too_long or too_big, and leave the others (regex syntax, the counts a gateway setting may change)
// to the gateway. A present null is a wire error; in the client API a null
// filter means none, so no field is sent.
const VECTORS = new URL("../../proto/vectors/filters.json", import.meta.url);
const vectors = existsSync(VECTORS) ? JSON.parse(readFileSync(VECTORS, "utf8")) : null;
const needsVectors = { skip: !vectors && "proto/vectors/filters.json is not in this tree" };
const SHAPE_KINDS = new Set(["not_object", "bad_key", "bad_value", "too_many_values", "regex_too_long", "too_big"]);
const CLAUSES = ["filter", "exclude"];

function refuses(conditions, what) {
  try {
    checkConditions(conditions, what);
    return false;
  } catch (err) {
    assert.ok(err instanceof TypeError, String(err));
    return true;
  }
}

test("filter vectors: every case's conditions pass the client's shape checks", needsVectors, () => {
  assert.ok(vectors.cases.length > 100);
  for (const c of vectors.cases) {
    for (const what of CLAUSES) if (what in c) assert.equal(refuses(c[what], what), false, JSON.stringify(c[what]));
  }
});

test("filter vectors: shape errors and the fixed limits are refused by the client, the gateway's own checks are left to it", needsVectors, () => {
  const { tg } = setup({ autoConnect: false });
  let refused = 0;
  for (const [i, e] of vectors.errors.entries()) {
    const present = CLAUSES.filter((what) => what in e && e[what] !== null);
    const options = Object.fromEntries(present.map((what) => [what, e[what]]));
    let got = false;
    try {
      tg.subscribe(`v${i}.>`, () => {}, options);
    } catch (err) {
      assert.ok(err instanceof TypeError, String(err));
      got = true;
    }
    const shape = SHAPE_KINDS.has(e.kind) && present.length > 0;
    assert.equal(got, shape, `${e.kind}: ${JSON.stringify(e).slice(0, 120)}`);
    refused += got;
  }
  assert.ok(refused >= 30, `${refused} refused`);
});

test("filter vectors: conditions that differ in meaning never share one gateway subscription", needsVectors, async () => {
  const ctx = setup({ autoConnect: false });
  let pairs = 0;
  for (const [i, pair] of vectors.canonical.entries()) {
    const spec = (side) => ({ filter: side.filter, exclude: side.exclude });
    const a = ctx.tg.subscribe(`c${i}.>`, () => {}, spec(pair.a));
    const b = ctx.tg.subscribe(`c${i}.>`, () => {}, spec(pair.b));
    if (!pair.same) {
      assert.notEqual(a.name, b.name, JSON.stringify(pair));
      pairs++;
    }
  }
  assert.ok(pairs > 0);
});

test("the fixed filter limits of proto/constants.json: in values, regex bytes, bytes of filter + exclude, checked before anything is sent", async () => {
  const limits = JSON.parse(readFileSync(new URL("../../proto/constants.json", import.meta.url), "utf8")).filters.limits;
  const values = limits.max_in_values.default;
  const regexBytes = limits.max_regex_bytes.default;
  const bytes = limits.max_bytes.default;
  const list = (n) => Array.from({ length: n }, (_, i) => i);
  checkConditions({ a__in: list(values) });
  assert.throws(() => checkConditions({ a__in: list(values + 1) }), /more than 100 values/);
  checkConditions({ a__regex: "é".repeat(regexBytes / 2) }, "exclude"); // bytes of UTF-8, not characters
  assert.throws(() => checkConditions({ a__iregex: "é".repeat(regexBytes / 2) + "x" }, "exclude"), /regex over 256 bytes/);
  const pad = (n) => ({ pad: "x".repeat(n - '{"pad":""}'.length) });
  checkConditions(pad(bytes));
  assert.throws(() => checkConditions(pad(bytes + 1)), /over 4096 bytes/);

  // filter and exclude together: each alone fits, both do not
  const ctx = setup();
  const socket = await online(ctx);
  const half = pad(bytes / 2 + 1);
  assert.throws(() => ctx.tg.subscribe("a.>", () => {}, { filter: half, exclude: half }), /filter and exclude are over 4096 bytes/);
  const sub = ctx.tg.subscribe("a.>", () => {}, { filter: half });
  assert.throws(() => sub.exclude(half), /over 4096 bytes/);
  assert.deepEqual(sub.filters, { filter: half, exclude: null }, "unchanged");
  await flush();
  assert.deepEqual(socket.frames("subscribe").map((f) => [f.filter, f.exclude]), [[half, undefined]], "only what fits was sent");
  assert.deepEqual(ctx.errors, []);
});
