// Recovery (PROTOCOL.md section 7) end to end: the client in Node against a real nats-server and
// real gateway binaries with history on (the default). Events published while the client cannot
// receive them arrive after the reconnect exactly once and in order, or the app hears recovered:false.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy } from "telegraphy-client";
import { natsForFile, Gateway, Inbox, recordingWebSocket, within } from "../testkit/stack.mjs";

const shared = natsForFile();

// One secret for every gateway of a test: a resume token from one is good on the others.
async function gateways(t, count, env = {}) {
  const secret = `recovery-test-secret-${Math.random().toString(36).slice(2)}-0123456789`;
  const list = [];
  for (let i = 0; i < count; i++) list.push(await Gateway.start(shared.nats, { secret, node: `gw-${i + 1}`, env }));
  t.after(() => Promise.all(list.map((gw) => gw.stop("SIGKILL"))));
  return list;
}

function client(t, url, token) {
  const { RecordingWebSocket, log } = recordingWebSocket();
  // random 0: start at the first URL of a list, and the shortest backoff (the test is not about it)
  const tg = new Telegraphy({ url, token, WebSocket: RecordingWebSocket, minDelay: 100, maxDelay: 1000, random: () => 0 });
  const states = new Inbox();
  const recovered = new Inbox();
  tg.on("state", states.push);
  tg.on("recovered", recovered.push);
  t.after(() => tg.close());
  return { tg, log, states, recovered };
}

/** Events the client received for `sub`, as the gateway sent them (name and seq). */
const framesFor = (log, sub) =>
  log.received.filter((e) => e.frame.type === "event" && e.frame.sub === sub).map((e) => [e.frame.name, e.frame.seq]);

async function publishAll(prefix, from, to) {
  const names = [];
  for (let i = from; i <= to; i++) {
    names.push(`${prefix}.${i}`);
    await shared.pub.publish(`${prefix}.${i}`, { i });
  }
  return names;
}

/** Receive `count` events from the inbox, then check that nothing else came before `marker`. */
async function receiveThen(inbox, names, marker, what) {
  const got = [];
  for (const _ of names) got.push((await inbox.next(5000, `${what}: event ${got.length + 1} of ${names.length}`)).name);
  await shared.pub.publish(marker, { marker: true });
  assert.equal((await inbox.next(5000, `${what}: marker`)).name, marker, "nothing between the events and the marker");
  return got;
}

test("gateway killed (-9), events published while it is down, restarted on the same port: recovered, once, in order", async (t) => {
  const [gw] = await gateways(t, 1);
  const { tg, log, states, recovered } = client(t, gw.wsUrl, await gw.token({ allow: ["rk.>"] }));
  const inbox = new Inbox();
  const subTold = [];
  const sub = tg.subscribe("rk.>", inbox.push).onRecover((r) => subTold.push(r));
  await within(5000, sub.ready(), "subscribed");
  const before = await publishAll("rk", 1, 3);
  assert.deepEqual(await receiveThen(inbox, before, "rk.live", "before the kill"), before);
  const position = sub.position;
  assert.equal(position.seq, framesFor(log, "rk.>").at(-1)[1], "the position is the last event's seq");

  await gw.stop("SIGKILL");
  await states.until((s) => s === "reconnecting", 5000, "reconnecting");
  const missed = await publishAll("rk", 4, 9); // stored in the stream; no gateway to deliver them
  const cut = log.received.length;
  await gw.restart();
  await states.until((s) => s === "connected", 15000, "connected again");
  const told = await recovered.next(5000, "recovered");
  assert.equal(told.recovered, true);
  assert.equal(told.sub, "rk.>");
  assert.deepEqual(subTold, [told]);

  assert.deepEqual(await receiveThen(inbox, missed, "rk.after", "after the restart"), missed);
  const resubscribe = log.sent.filter((e) => e.frame.type === "subscribe").at(-1).frame;
  assert.deepEqual(resubscribe.since, position, "re-subscribed with since = the last position");
  // exactly once and in order, as the gateway sent them (not only as the client let them through)
  const after = log.received.slice(cut).filter((e) => e.frame.type === "event").map((e) => e.frame);
  assert.deepEqual(after.map((f) => f.name), [...missed, "rk.after"]);
  const seqs = after.map((f) => f.seq);
  assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));
  assert.ok(seqs[0] > position.seq);
});

test("a different gateway (url list): the first one freezes and dies with undelivered events; the second replays them", async (t) => {
  const [a, b] = await gateways(t, 2);
  const { tg, log, states, recovered } = client(t, [a.wsUrl, b.wsUrl], await a.token({ allow: ["rd.>"] }));
  const inbox = new Inbox();
  const sub = tg.subscribe("rd.>", inbox.push);
  await within(5000, sub.ready(), "subscribed");
  assert.equal(tg.node, "gw-1");
  const first = await publishAll("rd", 1, 2);
  assert.deepEqual(await receiveThen(inbox, first, "rd.live", "on gw-1"), first);

  a.proc.child.kill("SIGSTOP"); // gw-1 still holds the socket but forwards nothing
  const missed = await publishAll("rd", 3, 7);
  await a.stop("SIGKILL");
  await states.until((s) => s === "reconnecting", 5000, "reconnecting");
  await states.until((s) => s === "connected", 10000, "connected to gw-2");
  assert.equal(tg.node, "gw-2");
  assert.equal(log.sockets.at(-1).socket.url, b.wsUrl);
  const connects = log.sent.filter((e) => e.frame.type === "connect").map((e) => e.frame);
  assert.ok(connects.at(-1).resume, "gw-2 took gw-1's resume token");
  assert.equal((await recovered.next(5000, "recovered")).recovered, true);
  assert.deepEqual(await receiveThen(inbox, missed, "rd.after", "on gw-2"), missed);
  assert.deepEqual(
    framesFor(log, "rd.>").map(([name]) => name),
    [...first, "rd.live", ...missed, "rd.after"],
    "every event once, in order, across both gateways",
  );
});

test("more missed events than history.max_replay: recovered:false reaches the app, which reloads; live events go on", async (t) => {
  const [gw] = await gateways(t, 1, { TELEGRAPHY_HISTORY__MAX_REPLAY: "2" });
  const { tg, states, recovered } = client(t, gw.wsUrl, await gw.token({ allow: ["rf.>"] }));
  const inbox = new Inbox();
  const subTold = [];
  const sub = tg.subscribe("rf.>", inbox.push, { onRecover: (r) => subTold.push(r) });
  await within(5000, sub.ready(), "subscribed");
  await shared.pub.publish("rf.0", 0);
  assert.equal((await inbox.next(5000, "first event")).name, "rf.0");
  const before = sub.position;

  await gw.stop("SIGKILL");
  await states.until((s) => s === "reconnecting", 5000, "reconnecting");
  await publishAll("rf", 1, 5);
  await gw.restart();
  const told = await recovered.next(15000, "recovered");
  assert.equal(told.recovered, false);
  assert.equal(told.epoch, before.epoch);
  assert.ok(told.seq >= before.seq + 5, `the answer's position ${told.seq} is past the missed events`);
  assert.deepEqual(subTold, [told]);
  assert.deepEqual(sub.position, { epoch: told.epoch, seq: told.seq });

  await shared.pub.publish("rf.live", { after: true });
  const next = await inbox.next(5000, "live event after recovered:false");
  assert.deepEqual([next.name, next.data], ["rf.live", { after: true }], "no missed event is replayed");
  assert.deepEqual(inbox.items, []);
});
