// The client in Node against a real nats-server and the real telegraphy-gateway binary.
// Fails (does not skip) when a binary is missing: see testkit/stack.mjs for the env variables.
import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Telegraphy } from "telegraphy-client";
import { natsForFile, Gateway, Inbox, recordingWebSocket, waitState, within } from "../testkit/stack.mjs";

const shared = natsForFile();

async function gateway(t, options) {
  const gw = await Gateway.start(shared.nats, options);
  t.after(() => gw.stop("SIGKILL"));
  return gw;
}

function client(t, gw, token, extra = {}) {
  const { RecordingWebSocket, log } = recordingWebSocket();
  const tg = new Telegraphy({ url: gw.wsUrl, token, WebSocket: RecordingWebSocket, ...extra });
  const states = new Inbox();
  const errors = [];
  tg.on("state", states.push);
  tg.on("error", (e) => errors.push(e));
  t.after(() => tg.close());
  return { tg, log, states, errors };
}

const frames = (entries, type) => entries.filter((e) => e.frame.type === type);

test("subscribe, receive, model helpers, forbidden, unsubscribe", async (t) => {
  const gw = await gateway(t);
  const { tg, log, errors } = client(t, gw, await gw.token({ allow: ["x.>"] }));
  const all = new Inbox();
  const created = new Inbox();
  const marker = new Inbox();
  const sub = tg.subscribe("x.>", all.push);
  tg.subscribe("x.order.*.*").onCreate(created.push);
  tg.subscribe("x.marker", marker.push);
  await within(5000, sub.ready(), "subscribed x.>");
  assert.equal(tg.state, "connected");
  assert.equal(tg.node, "gw-js");
  assert.match(frames(log.sent, "connect")[0].frame.token, /^tg1\./);

  await shared.pub.publish("x.order.created.-YSBi", { pk: "a b", total: "9.50" });
  assert.deepEqual(await all.next(2000, "event on x.>"), {
    name: "x.order.created.-YSBi",
    data: { pk: "a b", total: "9.50" },
    sub: "x.>",
  });
  const model = await created.next(2000, "onCreate");
  assert.equal(model.key, "a b");
  assert.equal(model.sub, "x.order.*.*");
  assert.equal(model.action, "created");

  // outside the token's allow: refused, the connection stays
  const denied = tg.subscribe("y.>", () => {});
  await assert.rejects(within(5000, denied.ready(), "forbidden"), (e) => e.code === "forbidden" && e.event === "y.>");
  assert.equal(errors.at(-1).code, "forbidden");
  assert.equal(tg.state, "connected");

  await within(5000, sub.unsubscribe(), "unsubscribed");
  const cut = log.received.findIndex((e) => e.frame.type === "unsubscribed");
  assert.ok(cut >= 0, "the gateway answered unsubscribed");
  await shared.pub.publish("x.after.1", { n: 1 });
  await shared.pub.publish("x.marker", { n: 2 });
  assert.deepEqual((await marker.next(2000, "marker event")).data, { n: 2 });
  const late = log.received.slice(cut).filter((e) => e.frame.type === "event" && e.frame.sub === "x.>");
  assert.deepEqual(late, [], "no event for x.> after unsubscribed");
  assert.deepEqual(all.items, []);
});

test("gateway restart (SIGTERM, 1012) on the same port: the client comes back by itself, resumes, keeps its subscriptions", async (t) => {
  const gw = await gateway(t);
  const { tg, log, states } = client(t, gw, await gw.token({ allow: ["r.>"] }));
  const inbox = new Inbox();
  const sub = tg.subscribe("r.>", inbox.push);
  await within(5000, sub.ready(), "subscribed");
  await shared.pub.publish("r.one", 1);
  assert.equal((await inbox.next(2000, "first event")).data, 1);
  const firstSession = tg.session;

  const stopped = gw.stop("SIGTERM");
  await states.until((s) => s === "reconnecting", 10000, "reconnecting");
  await stopped;
  assert.ok(log.closes.some((c) => c.code === 1012), `close codes seen: ${JSON.stringify(log.closes)}`);
  await gw.restart();
  await states.until((s) => s === "connected", 25000, "connected again");
  await within(5000, sub.ready(), "re-subscribed");

  await shared.pub.publish("r.two", 2);
  assert.deepEqual(await inbox.next(2000, "event after restart"), { name: "r.two", data: 2, sub: "r.>" });
  const connects = frames(log.sent, "connect").map((e) => e.frame);
  assert.ok(connects.length >= 2);
  assert.ok(connects[0].token && !connects[0].resume, "first connect uses the token");
  assert.ok(connects.at(-1).resume && !connects.at(-1).token, "reconnect uses the resume token");
  assert.equal(frames(log.sent, "subscribe").filter((e) => e.frame.event === "r.>").length >= 2, true);
  assert.notEqual(tg.session, null);
  assert.ok(firstSession);
});

test("gateway killed (SIGKILL): backoff never hammers, then the client comes back", async (t) => {
  const gw = await gateway(t);
  const { tg, log, states } = client(t, gw, await gw.token({ allow: ["k.>"] }));
  const inbox = new Inbox();
  const sub = tg.subscribe("k.>", inbox.push);
  await within(5000, sub.ready(), "subscribed");

  await gw.stop("SIGKILL");
  await states.until((s) => s === "reconnecting", 5000, "reconnecting");
  const start = Date.now();
  const window = 4000;
  await new Promise((resolve) => setTimeout(resolve, window)); // a measurement window, not a synchronisation
  const attempts = log.sockets.filter((s) => s.at >= start && s.at < start + window).map((s) => s.at);
  // The original client retried every 5 ms (800 attempts here); backoff waits at least 0.5 s each time.
  assert.ok(attempts.length >= 2, `keeps trying: ${attempts.length} attempts`);
  assert.ok(attempts.length <= window / 500 + 1, `${attempts.length} attempts in ${window} ms`);
  const all = log.sockets.map((s) => s.at);
  for (let i = 2; i < all.length; i++) {
    assert.ok(all[i] - all[i - 1] >= 450, `gap ${all[i] - all[i - 1]} ms between attempts ${i - 1} and ${i}`);
  }

  await gw.restart();
  await states.until((s) => s === "connected", 25000, "connected again");
  await within(5000, sub.ready(), "re-subscribed");
  await shared.pub.publish("k.back", { ok: true });
  assert.deepEqual((await inbox.next(2000, "event after restart")).data, { ok: true });
});

test("a frozen gateway (SIGSTOP) is detected after 2 heartbeats; the client recovers after SIGCONT", async (t) => {
  const gw = await gateway(t, { env: { TELEGRAPHY_HEARTBEAT: "1" } });
  const { tg, states } = client(t, gw, await gw.token({ allow: ["h.>"] }));
  const inbox = new Inbox();
  const sub = tg.subscribe("h.>", inbox.push);
  await within(5000, sub.ready(), "subscribed");
  gw.proc.child.kill("SIGSTOP");
  t.after(() => gw.proc?.child.kill("SIGCONT"));
  const frozenAt = Date.now();
  await states.until((s) => s === "reconnecting", 5000, "dead link detected");
  const detectedAfter = Date.now() - frozenAt;
  assert.ok(detectedAfter <= 3500, `detected after ${detectedAfter} ms (heartbeat 1 s)`);
  gw.proc.child.kill("SIGCONT");
  await states.until((s) => s === "connected", 25000, "connected again");
  await within(5000, sub.ready(), "re-subscribed");
  await shared.pub.publish("h.back", 7);
  assert.equal((await inbox.next(2000, "event after thaw")).data, 7);
});

test("a used connect token is refused (4001): without getToken the client stops as unauthorized", async (t) => {
  const gw = await gateway(t);
  const token = await gw.token({ allow: ["u.>"] });
  const first = client(t, gw, token);
  await waitState(first.tg, "connected", 5000);
  const second = client(t, gw, token);
  await waitState(second.tg, "unauthorized", 5000);
  assert.equal(second.errors[0].code, "unauthorized");
  assert.ok(second.log.closes.some((c) => c.code === 4001));
  assert.equal(second.log.sockets.length, 1, "no retry without a way to get a token");
  // with getToken the app is asked for a new one
  const third = client(t, gw, token, { getToken: () => gw.token({ allow: ["u.>"] }) });
  await waitState(third.tg, "connected", 10000);
  assert.equal(third.log.sockets.length, 2);
});

test("tokenUrl: the client POSTs for connect tokens with X-CSRFToken; 429 waits for Retry-After; 401/403 = unauthorized", async (t) => {
  const gw = await gateway(t);
  const requests = [];
  let answer = "token";
  const server = http.createServer(async (req, res) => {
    requests.push({ method: req.method, csrf: req.headers["x-csrftoken"], at: Date.now() });
    if (answer === "429") {
      answer = "token";
      return res.writeHead(429, { "retry-after": "1" }).end();
    }
    if (answer === "403") return res.writeHead(403).end();
    if (answer === "401") return res.writeHead(401).end();
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token: await gw.token({ allow: ["t.>"] }) }));
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  t.after(() => server.close());
  const tokenUrl = `http://127.0.0.1:${server.address().port}/telegraphy/token`;

  const { tg, log } = client(t, gw, null, { tokenUrl, csrfToken: "csrf-from-page" });
  const inbox = new Inbox();
  const sub = tg.subscribe("t.>", inbox.push);
  await within(10000, sub.ready(), "subscribed with a fetched token");
  assert.deepEqual(requests.map((r) => [r.method, r.csrf]), [["POST", "csrf-from-page"]]);
  assert.match(frames(log.sent, "connect")[0].frame.token, /^tg1\./);
  await shared.pub.publish("t.x", 1);
  assert.equal((await inbox.next(2000, "event")).data, 1);

  // rate limited: no hammering, the next POST comes after Retry-After (1 s; minDelay is 10 ms here)
  requests.length = 0;
  answer = "429";
  const limited = client(t, gw, null, { tokenUrl, csrfToken: "c2", minDelay: 10, maxDelay: 50 });
  await waitState(limited.tg, "connected", 10000);
  assert.equal(requests.length, 2);
  const waited = requests[1].at - requests[0].at;
  console.log(`429 with Retry-After: 1 -> next token request after ${waited} ms`);
  assert.ok(waited >= 950, `waited only ${waited} ms`);
  assert.equal(limited.errors[0].code, "token");

  for (const status of ["403", "401"]) {
    answer = status;
    const denied = client(t, gw, null, { tokenUrl });
    await waitState(denied.tg, "unauthorized", 5000);
    assert.equal(denied.log.sockets.length, 0);
  }
});
