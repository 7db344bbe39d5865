// Presence (PROTOCOL.md section 11) with the client in Node against a real nats-server and the real
// telegraphy-gateway: two clients on one channel see each other's join, snapshot, stats and leave; past
// presence.max_join_leave_members the join/leave stop (presence_paused) until leaves resume them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy } from "telegraphy-client";
import { natsForFile, Gateway, Inbox, recordingWebSocket, within } from "../testkit/stack.mjs";

const shared = natsForFile();

/** A client of `gw` for `user` (allowed chat.>), closed after the test; `log` records its frames. */
async function opener(t, gw) {
  return async (user, info) => {
    const { RecordingWebSocket, log } = recordingWebSocket();
    const tg = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ user, allow: ["chat.>"], info }), WebSocket: RecordingWebSocket });
    t.after(() => tg.close());
    return { tg, log };
  };
}

test("two clients: join reaches the first, presence() lists both with user and info, stats count, leave on close", async (t) => {
  const gw = await Gateway.start(shared.nats);
  t.after(() => gw.stop("SIGKILL"));
  const open = await opener(t, gw);

  const alice = await open("alice", { name: "Alice" });
  const joins = new Inbox();
  const leaves = new Inbox();
  const lobby = alice.tg.subscribe("chat.lobby", () => {}, { presence: true }).on("join", joins.push).on("leave", leaves.push);
  await within(10000, lobby.ready(), "alice present");
  const sent = alice.log.sent.find((e) => e.frame.type === "subscribe").frame;
  assert.equal(sent.presence, true);
  assert.deepEqual((await within(5000, lobby.presence(), "snapshot alone")).clients.map((m) => m.user), ["alice"]);

  const bob = await open("bob");
  const bobLobby = bob.tg.subscribe("chat.lobby", () => {}, { presence: true });
  await within(10000, bobLobby.ready(), "bob present");
  const joined = await joins.next(5000, "bob's join at alice");
  assert.equal(joined.user, "bob");
  assert.equal(joined.info, undefined, "bob's token has no info");
  assert.equal(typeof joined.client, "string");

  const snapshot = await within(5000, bobLobby.presence(), "snapshot of both");
  assert.equal(snapshot.truncated, false);
  const byUser = Object.fromEntries(snapshot.clients.map((m) => [m.user, m]));
  assert.deepEqual(Object.keys(byUser).sort(), ["alice", "bob"]);
  assert.deepEqual(byUser.alice.info, { name: "Alice" });
  assert.equal(byUser.bob.client, joined.client, "the same client id in the join and the snapshot");
  assert.deepEqual(await within(5000, lobby.presenceStats(), "stats"), { clients: 2, users: 2 });

  // a plain subscription has no presence to ask for (refused before any frame)
  const other = alice.tg.subscribe("chat.other", () => {});
  await within(5000, other.ready(), "plain subscription");
  await assert.rejects(other.presence(), (e) => e.code === "bad_request");
  assert.equal(alice.log.sent.filter((e) => e.frame.type === "presence").length, 1, "only the first snapshot went out");

  bob.tg.close(); // a close frame: leave at once
  const left = await leaves.next(10000, "bob's leave at alice");
  assert.deepEqual(left, { client: joined.client, user: "bob" });
  assert.deepEqual(await within(5000, lobby.presenceStats(), "stats after leave"), { clients: 1, users: 1 });
});

test("over max_join_leave_members (2): presence_paused instead of the third join, snapshot and stats still answer, presence_resumed at 2", async (t) => {
  const gw = await Gateway.start(shared.nats, { env: { TELEGRAPHY_PRESENCE__MAX_JOIN_LEAVE_MEMBERS: "2" } });
  t.after(() => gw.stop("SIGKILL"));
  const open = await opener(t, gw);
  // one client present on chat.crowd (the first test's members of chat.lobby may linger in the shared
  // bucket until their TTL), with every presence event it receives in one inbox, in order
  const present = async (user) => {
    const c = await open(user);
    c.events = new Inbox();
    const tag = (type) => (arg) => c.events.push({ type, ...arg });
    c.sub = c.tg
      .subscribe("chat.crowd", () => {}, { presence: true })
      .on("join", tag("join"))
      .on("leave", tag("leave"))
      .on("presence_paused", tag("presence_paused"))
      .on("presence_resumed", tag("presence_resumed"));
    await within(10000, c.sub.ready(), `${user} present`);
    return c;
  };
  const texts = (c, type) => c.log.received.filter((e) => e.frame.type === type).map((e) => e.text);

  const alice = await present("alice");
  const bob = await present("bob");
  const bobJoin = await alice.events.next(5000, "bob's join at alice");
  assert.deepEqual([bobJoin.type, bobJoin.user], ["join", "bob"]);
  assert.equal(alice.sub.presencePaused, false, "2 members: at the bound, not over it");

  const carol = await present("carol"); // 3 members: over the bound
  for (const c of [alice, bob, carol]) {
    assert.deepEqual(await c.events.next(10000, "presence_paused"), { type: "presence_paused", clients: 3 }, "no join of carol, the pause instead");
    assert.equal(c.sub.presencePaused, true);
  }
  assert.deepEqual(texts(alice, "presence_paused"), ['{"type":"presence_paused","sub":"chat.crowd","clients":3}'], "byte-exact");

  // joining a channel already over the bound: `subscribed`, then presence_paused
  const dave = await present("dave");
  assert.deepEqual(await dave.events.next(10000, "dave's presence_paused"), { type: "presence_paused", clients: 4 });
  const daves = dave.log.received.map((e) => e.frame).filter((f) => f.sub === "chat.crowd" || (f.type === "subscribed" && f.event === "chat.crowd"));
  assert.deepEqual(daves.map((f) => f.type), ["subscribed", "presence_paused"]);
  assert.deepEqual(await within(5000, alice.sub.presenceStats(), "stats while paused"), { clients: 4, users: 4 });
  const snapshot = await within(5000, alice.sub.presence(), "snapshot while paused");
  assert.deepEqual(snapshot.clients.map((m) => m.user).sort(), ["alice", "bob", "carol", "dave"]);
  assert.equal(snapshot.truncated, false);

  dave.tg.close(); // 3: still over, nothing sent
  carol.tg.close(); // 2 (= 2 - floor(2/10)): resumed
  for (const c of [alice, bob]) {
    assert.deepEqual(await c.events.next(10000, "presence_resumed"), { type: "presence_resumed", clients: 2 }, "nothing in between: no join/leave while paused");
    assert.equal(c.sub.presencePaused, false);
  }
  assert.deepEqual(texts(bob, "presence_resumed"), ['{"type":"presence_resumed","sub":"chat.crowd","clients":2}'], "byte-exact");
  assert.deepEqual((await within(5000, alice.sub.presence(), "the list again")).clients.map((m) => m.user).sort(), ["alice", "bob"]);

  bob.tg.close(); // join/leave flow again
  assert.deepEqual(await alice.events.next(10000, "bob's leave after the resume"), { type: "leave", client: bobJoin.client, user: "bob" });
  assert.equal(alice.log.received.filter((e) => e.frame.type === "presence_paused").length, 1, "one pause per channel crossing");
});
