// Named and filtered subscriptions (PROTOCOL.md section 8) end to end: the client in Node against a
// real nats-server and the real gateway, which evaluates the filters.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy } from "telegraphy-client";
import { natsForFile, Gateway, Inbox, recordingWebSocket, within } from "../testkit/stack.mjs";

const shared = natsForFile();

async function connectedClient(t, allow) {
  const gw = await Gateway.start(shared.nats);
  t.after(() => gw.stop("SIGKILL"));
  const { RecordingWebSocket, log } = recordingWebSocket();
  const tg = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ allow }), WebSocket: RecordingWebSocket, minDelay: 100, maxDelay: 1000 });
  const errors = [];
  tg.on("error", (e) => errors.push(e));
  t.after(() => tg.close());
  return { gw, tg, log, errors };
}

const orders = [
  { pk: 1, customer: { id: 7 }, total: "150.00", status: "paid" },
  { pk: 2, customer: { id: 7 }, total: "20.00", status: "paid" },
  { pk: 3, customer: { id: 8 }, total: "900.00", status: "paid" },
  { pk: 4, customer: { id: 7 }, total: "300.00", status: "cancelled" },
  { pk: 5, customer: { id: 8 }, total: "5.00", status: "new" },
];

test("two subscriptions with different filters on one pattern each receive only their events", async (t) => {
  const { tg, log, errors } = await connectedClient(t, ["fo.>"]);
  const big7 = new Inbox();
  const small = new Inbox();
  const all = new Inbox();
  const s1 = tg
    .subscribe("fo.order.>", big7.push)
    .filter({ customer__id: 7, total__gte: 100 })
    .exclude({ status__in: ["cancelled", "refunded"] });
  const s2 = tg.subscribe("fo.order.>", small.push, { filter: { total__lt: 100 }, name: "small" });
  const s3 = tg.subscribe("fo.order.>", all.push);
  await within(5000, Promise.all([s1.ready(), s2.ready(), s3.ready()]), "three subscriptions");
  assert.equal(s2.name, "small");
  assert.notEqual(s1.name, s3.name);

  for (const o of orders) await shared.pub.publish(`fo.order.created.${o.pk}`, o);
  const pks = async (inbox, n, what) => {
    const got = [];
    for (let i = 0; i < n; i++) got.push((await inbox.next(5000, `${what} ${i + 1}/${n}`)).data.pk);
    return got;
  };
  assert.deepEqual(await pks(all, 5, "unfiltered"), [1, 2, 3, 4, 5]);
  assert.deepEqual(await pks(big7, 1, "customer 7 over 100, not cancelled"), [1]);
  assert.deepEqual(await pks(small, 2, "under 100"), [2, 5]);
  await shared.pub.publish("fo.order.created.6", { pk: 6, customer: { id: 1 }, total: "1000", status: "new" });
  assert.equal((await all.next(5000, "marker")).data.pk, 6, "the unfiltered one got the marker");
  assert.deepEqual([big7.items, small.items], [[], []], "nothing else reached the filtered ones");
  // what went over the wire: one frame per matching subscription, under its name
  const wire = log.received.filter((e) => e.frame.type === "event").map((e) => [e.frame.sub, e.frame.data.pk]);
  assert.deepEqual(wire.filter(([sub]) => sub === s1.name).map(([, pk]) => pk), [1]);
  assert.deepEqual(wire.filter(([sub]) => sub === "small").map(([, pk]) => pk), [2, 5]);
  assert.deepEqual(errors, []);
});

test("filter() later replaces the subscription on the gateway; unsubscribe by name; a bad filter fails only itself", async (t) => {
  const { tg, log } = await connectedClient(t, ["fr.>"]);
  const inbox = new Inbox();
  const sub = tg.subscribe("fr.>", inbox.push, { filter: { n__gte: 1 }, name: "ns" });
  await within(5000, sub.ready(), "subscribed");
  await shared.pub.publish("fr.x", { n: 1 });
  assert.equal((await inbox.next(5000, "n=1")).data.n, 1);

  await within(5000, sub.filter({ n__gte: 10 }).ready(), "replaced");
  await shared.pub.publish("fr.x", { n: 2 });
  await shared.pub.publish("fr.x", { n: 20 });
  assert.equal((await inbox.next(5000, "n=20")).data.n, 20, "n=2 no longer passes");
  const subscribes = log.sent.filter((e) => e.frame.type === "subscribe").map((e) => e.frame);
  assert.deepEqual(subscribes.at(-1).filter, { n__gte: 10 });
  assert.equal(subscribes.at(-1).sub, "ns");

  const bad = tg.subscribe("fr.>", () => {}, { filter: { n__regex: "(" }, name: "bad" });
  await assert.rejects(within(5000, bad.ready(), "refused"), (e) => e.code === "bad_request");
  assert.equal(tg.state, "connected");

  await within(5000, sub.unsubscribe(), "unsubscribed");
  const [undo] = log.sent.filter((e) => e.frame.type === "unsubscribe").map((e) => e.frame);
  assert.deepEqual(undo, { type: "unsubscribe", id: undo.id, sub: "ns" });
  const cut = log.received.length;
  const marker = new Inbox();
  const m = tg.subscribe("fr.marker", marker.push);
  await within(5000, m.ready(), "marker subscribed");
  await shared.pub.publish("fr.x", { n: 30 });
  await shared.pub.publish("fr.marker", {});
  await marker.next(5000, "marker");
  assert.deepEqual(log.received.slice(cut).filter((e) => e.frame.sub === "ns"), [], "nothing for ns after unsubscribe");
});

test("recovery keeps the filters: after a kill -9 and restart, each subscription gets only its missed events, once, in order", async (t) => {
  const { gw, tg, log } = await connectedClient(t, ["fk.>"]);
  const states = new Inbox();
  const told = new Inbox();
  tg.on("state", states.push);
  tg.on("recovered", told.push);
  const seven = new Inbox();
  const all = new Inbox();
  const s7 = tg.subscribe("fk.order.>", seven.push, { filter: { customer__id: 7 }, exclude: { status: "cancelled" }, name: "c7" });
  const sAll = tg.subscribe("fk.order.>", all.push);
  await within(5000, Promise.all([s7.ready(), sAll.ready()]), "subscribed");
  await shared.pub.publish("fk.order.created.0", { pk: 0, customer: { id: 7 }, status: "paid" });
  assert.equal((await seven.next(5000, "first c7 event")).data.pk, 0);
  assert.equal((await all.next(5000, "first event")).data.pk, 0);

  await gw.stop("SIGKILL");
  await states.until((s) => s === "reconnecting", 5000, "reconnecting");
  const cut = log.received.length;
  for (const o of orders) await shared.pub.publish(`fk.order.updated.${o.pk}`, o);
  await gw.restart();
  const outcomes = [await told.next(15000, "recovered 1"), await told.next(5000, "recovered 2")];
  assert.deepEqual(outcomes.map((o) => [o.sub, o.recovered]).sort(), [["c7", true], ["fk.order.>", true]]);

  const pks = async (inbox, n, what) => {
    const got = [];
    for (let i = 0; i < n; i++) got.push((await inbox.next(5000, `${what} ${i + 1}/${n}`)).data.pk);
    return got;
  };
  assert.deepEqual(await pks(seven, 2, "c7 replay"), [1, 2], "customer 7, not cancelled");
  assert.deepEqual(await pks(all, 5, "full replay"), [1, 2, 3, 4, 5]);
  await shared.pub.publish("fk.order.created.9", { pk: 9, customer: { id: 7 }, status: "new" });
  assert.equal((await seven.next(5000, "live c7")).data.pk, 9);
  assert.equal((await all.next(5000, "live")).data.pk, 9);
  const wire = log.received.slice(cut).filter((e) => e.frame.type === "event" && e.frame.sub === "c7").map((e) => e.frame.data.pk);
  assert.deepEqual(wire, [1, 2, 9], "the gateway sent c7 only its own events");
});

test("setFilters swaps filter and exclude in one subscribe frame; frames of the old filter still in flight never reach the handler", async (t) => {
  const { gw, tg, log, errors } = await connectedClient(t, ["fs.>"]);
  const got = [];
  const inbox = new Inbox();
  const handler = (e) => {
    got.push(e.data);
    inbox.push(e.data);
  };
  const sub = tg.subscribe("fs.>", handler, { filter: { kind: "old" }, exclude: { n__gte: 1000 }, name: "sw" });
  await within(5000, sub.ready(), "subscribed");
  // a second connection sees when the gateway has fanned the whole burst out
  const { RecordingWebSocket } = recordingWebSocket();
  const probe = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ allow: ["fs.>"] }), WebSocket: RecordingWebSocket });
  t.after(() => probe.close());
  const seen = new Inbox();
  await within(5000, probe.subscribe("fs.>", (e) => seen.push(e.data)).ready(), "probe subscribed");

  // The client stops reading while a burst for the old filter is queued to it; then it asks for the new
  // filter and reads again: the whole burst arrives before the gateway's answer.
  const [{ socket: ws }] = log.sockets;
  ws.pause();
  for (let n = 0; n < 200; n++) await shared.pub.publish("fs.x", { kind: "old", n });
  await seen.until((d) => d.n === 199, 5000, "the probe got the whole burst");
  const cut = log.sent.length;
  const swappedAt = log.received.length;
  const swap = sub.setFilters({ filter: { kind: "new" } });
  ws.resume();
  await within(5000, swap, "swapped");
  await shared.pub.publish("fs.x", { kind: "old", n: 2000 });
  await shared.pub.publish("fs.x", { kind: "new", n: 1 });
  await shared.pub.publish("fs.x", { kind: "new", n: 5000 }); // the old exclude is gone too
  await inbox.until((d) => d.n === 5000, 5000, "the new filter's events");

  const sent = log.sent.slice(cut).map((e) => e.frame);
  assert.deepEqual(sent.map((f) => f.type), ["subscribe"], "one frame, no unsubscribe");
  assert.deepEqual(sent[0], { type: "subscribe", id: sent[0].id, event: "fs.>", sub: "sw", filter: { kind: "new" } });
  assert.deepEqual(got, [{ kind: "new", n: 1 }, { kind: "new", n: 5000 }], "nothing of the old filter after the swap");
  const answers = log.received.slice(swappedAt).map((e) => e.frame);
  const reply = answers.findIndex((f) => f.type === "subscribed" && f.id === sent[0].id);
  assert.equal(answers[reply]?.sub, "sw", "the gateway answered the swap");
  const stale = answers.slice(0, reply).filter((f) => f.type === "event" && f.sub === "sw");
  assert.deepEqual(stale.map((f) => f.data.n), [...Array(200).keys()], "the burst came before the answer: all dropped");
  assert.ok(answers.slice(reply).every((f) => f.type !== "event" || f.data.kind === "new"), "after it, only the new filter's");
  if (answers[reply].epoch) assert.deepEqual(sub.position?.epoch, answers[reply].epoch, "the position is the new answer's epoch");
  assert.deepEqual(errors, []);
});
