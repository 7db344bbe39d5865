// Presence (PROTOCOL.md section 11) with the client in Node against a real nats-server and the real
// telegraphy-gateway: two clients on one channel see each other's join, snapshot, stats and leave.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy } from "../telegraphy.js";
import { natsForFile, Gateway, Inbox, recordingWebSocket, within } from "../testkit/stack.mjs";

const shared = natsForFile();

test("two clients: join reaches the first, presence() lists both with user and info, stats count, leave on close", async (t) => {
  const gw = await Gateway.start(shared.nats);
  t.after(() => gw.stop("SIGKILL"));
  const open = async (user, info) => {
    const { RecordingWebSocket, log } = recordingWebSocket();
    const tg = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ user, allow: ["chat.>"], info }), WebSocket: RecordingWebSocket });
    t.after(() => tg.close());
    return { tg, log };
  };

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
