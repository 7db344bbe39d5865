// tg.publish and tg.rpc (PROTOCOL.md sections 13.1 and 14) against a real nats-server, the real gateway binary
// and a raw NATS worker, over WebSocket and over SSE (client frames POSTed). Fails when a binary is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { Telegraphy, RpcError } from "telegraphy-client";
import { natsForFile, Gateway, Inbox, NatsWorker, waitState, within } from "../testkit/stack.mjs";

const shared = natsForFile();

async function gateway(t, options) {
  const gw = await Gateway.start(shared.nats, options);
  t.after(() => gw.stop("SIGKILL"));
  return gw;
}

async function worker(t, answer) {
  const w = await NatsWorker.start(shared.nats.port, "telegraphy_rpc.chat.*", answer);
  t.after(() => w.close());
  return w;
}

const grants = { allow: ["chat.>"], publishEphemeral: ["chat.*.typing"], publish: ["chat.*.message"], rpc: ["chat.*"] };

async function connected(t, gw, user, transports = ["websocket"]) {
  const tg = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ user, ...grants }), transports, WebSocket });
  t.after(() => tg.close());
  await waitState(tg, "connected", 10000);
  return tg;
}

// A worker answering chat.send with the sender headers and the data, chat.missing with an error, nothing else.
function chatWorker(seen = []) {
  return ({ subject, headers, payload }) => {
    seen.push(subject);
    if (subject.endsWith(".send")) return JSON.stringify({ data: { user: headers["Telegraphy-User"], client: headers["Telegraphy-Client"], got: JSON.parse(payload) } });
    if (subject.endsWith(".missing")) return JSON.stringify({ error: { code: "not_found", message: "no such room" } });
    return null;
  };
}

for (const transport of ["websocket", "sse"]) {
  test(`${transport}: rpc answers, typed errors, publish with from`, async (t) => {
    const gw = await gateway(t);
    await worker(t, chatWorker());
    const alice = await connected(t, gw, "alice", [transport]);
    const bob = await connected(t, gw, "bob");
    assert.equal(alice.transport, transport);
    assert.match(alice.client, /^[A-Za-z0-9_-]{16}$/);

    const result = await within(5000, alice.rpc("chat.send", { text: "hi" }), "rpc result");
    assert.deepEqual(result, { user: Buffer.from("alice").toString("base64url"), client: alice.client, got: { text: "hi" } });
    const missing = await alice.rpc("chat.missing", {}).then(() => null, (e) => e);
    assert.ok(missing instanceof RpcError && missing instanceof Telegraphy.TelegraphyError, String(missing));
    assert.deepEqual([missing.code, missing.message], ["not_found", "no such room"]);
    const denied = await alice.rpc("shop.buy").catch((e) => e);
    assert.equal(denied.code, "forbidden");
    const nobody = await alice.rpc("chat.silent", null, { timeout: 300 }).catch((e) => e);
    assert.equal(nobody.code, "timeout", "the client's own timeout");

    const seen = new Inbox();
    const sub = bob.subscribe("chat.lobby.*", seen.push);
    await within(5000, sub.ready(), "bob subscribed");
    await within(5000, alice.publish("chat.lobby.typing", { typing: true }), "published");
    const event = await seen.next(5000, "bob sees alice typing");
    assert.deepEqual(event.from, { user: "alice", client: alice.client });
    assert.deepEqual(event.data, { typing: true });
    const refused = await alice.publish("shop.order.1", 1).catch((e) => e);
    assert.equal(refused.code, "forbidden");
    assert.equal(alice.state, "connected", "refusals keep the connection");
  });
}

test("an rpc whose connection ends rejects as disconnected and is never resent", async (t) => {
  const gw = await gateway(t);
  const subjects = [];
  await worker(t, chatWorker(subjects));
  const alice = await connected(t, gw, "alice");
  const outcome = alice.rpc("chat.hold", { n: 1 }).catch((e) => e);
  await within(5000, (async () => { while (subjects.length === 0) await new Promise((r) => setTimeout(r, 20)); })(), "request at the worker");
  await gw.stop("SIGKILL");
  const error = await within(5000, outcome, "rejection");
  assert.equal(error.code, "disconnected");
  await gw.restart();
  await waitState(alice, "connected", 15000);
  assert.equal(await alice.rpc("chat.send", 2).then((r) => r.got), 2);
  assert.deepEqual(subjects, ["telegraphy_rpc.chat.hold", "telegraphy_rpc.chat.send"], "the held rpc was not resent");
  const offline = new Telegraphy({ url: gw.wsUrl, autoConnect: false, WebSocket });
  assert.equal((await offline.rpc("chat.send").catch((e) => e)).code, "disconnected");
});
