// The event catalog (PROTOCOL.md section 12) with the client in Node against a real nats-server and the real
// telegraphy-gateway: entries put in the KV bucket with plain NATS messages are listed by tg.events() (over
// WebSocket and SSE) within the token's grant, narrowed by `event`; in strict mode a subscription that can
// match no entry fails with code "unknown_event" while the connection stays up.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Telegraphy } from "telegraphy-client";
import { natsForFile, Gateway, recordingWebSocket, within } from "../testkit/stack.mjs";

const shared = natsForFile();
const BUCKET = "telegraphy_catalog";

function entry(owner, name, patterns, extra = {}) {
  return {
    format: 1, name, patterns, kind: "custom", operations: [], description: "", data: { type: "object" },
    presence: null, version: 1, owner, generation: 3, ...extra,
  };
}

/** tg.events() until the node has loaded its catalog and `done(listing)` holds (bounded). */
async function eventsUntil(tg, options, done) {
  const deadline = Date.now() + 10000;
  for (;;) {
    let listing = null;
    try {
      listing = await tg.events(options);
    } catch (e) {
      if (e.code !== "internal") throw e; // "catalog not loaded": right after the node started
    }
    if (listing && done(listing)) return listing;
    assert.ok(Date.now() < deadline, `events never matched: ${JSON.stringify(listing)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const names = (listing) => listing.events.map((e) => e.name);

test("tg.events() lists the catalog within the grant, over WebSocket and SSE; strict mode says unknown_event", async (t) => {
  await shared.pub.kvPut(BUCKET, "go-shop.shop.order.=", entry("go-shop", "shop.order.{key}", ["shop.order.*"], { description: "An order." }));
  await shared.pub.kvPut(BUCKET, "go-chat.chat.=.message", entry("go-chat", "chat.{room}.message", ["chat.*.message"]));
  const gw = await Gateway.start(shared.nats, { env: { TELEGRAPHY_CATALOG__MODE: "strict" } });
  t.after(() => gw.stop("SIGKILL"));

  const tg = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ allow: ["shop.>", "news.>"] }), WebSocket: recordingWebSocket().RecordingWebSocket });
  t.after(() => tg.close());
  // Called before the connection is up: waits for it.
  const listing = await eventsUntil(tg, undefined, (l) => l.events.length > 0);
  assert.equal(listing.mode, "strict");
  assert.equal(listing.truncated, false);
  assert.deepEqual(listing.events, [
    { name: "shop.order.{key}", patterns: ["shop.order.*"], kind: "custom", operations: [], description: "An order.", data: { type: "object" }, presence: null, version: 1 },
  ]);
  assert.deepEqual(names(await tg.events({ event: "chat.>" })), [], "narrowing never widens the grant");
  await assert.rejects(tg.events({ event: "a..b" }), (e) => e.code === "bad_request");

  const refused = tg.subscribe("news.>", () => {});
  await assert.rejects(within(5000, refused.ready(), "news.> refused"), (e) => e.code === "unknown_event" && e.event === "news.>");
  const known = tg.subscribe("shop.order.*", () => {});
  await within(5000, known.ready(), "shop.order.* subscribed");
  assert.equal(tg.state, "connected", "an unknown_event does not close the connection");

  // A deploy registers news.{topic}: listed at once by the node's watch.
  await shared.pub.kvPut(BUCKET, "go-news.news.=", entry("go-news", "news.{topic}", ["news.*"]));
  await eventsUntil(tg, { event: "news.>" }, (l) => names(l).join() === "news.{topic}");

  // The same request over SSE.
  const overSse = new Telegraphy({ url: gw.wsUrl, token: await gw.token({ allow: ["chat.lobby.message"] }), transports: ["sse"], WebSocket: null });
  t.after(() => overSse.close());
  const sse = await eventsUntil(overSse, undefined, () => true);
  assert.equal(overSse.transport, "sse");
  assert.deepEqual(names(sse), ["chat.{room}.message"]);
});

test("tg.events() rejects not_connected on a closed client", async () => {
  const tg = new Telegraphy({ url: "ws://127.0.0.1:9/ws", autoConnect: false, WebSocket: class {} });
  await assert.rejects(tg.events(), (e) => e.code === "not_connected");
});
