// Both transports (PROTOCOL.md section 10) in real Chromium against the real gateway and nats-server:
// connect, subscribe, events, unsubscribe, recovery after the gateway closes the connection (SIGTERM
// drain, 1012), 4001 and 4003; presence over SSE (section 11) with a WebSocket client on the same channel. Then a proxy that refuses WebSocket upgrades (403, or a dropped
// connection) and forwards plain HTTP (the streaming SSE response and the POSTs): the page, with the
// default transports, ends on SSE; and the POSTed pongs keep an SSE connection through it alive.
// Needs a gateway with SSE: TELEGRAPHY_GATEWAY_BIN.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";
import { Telegraphy } from "telegraphy-client";
import { NatsServer, NatsPublisher, Gateway, within, recordingWebSocket, GATEWAY_BIN } from "../testkit/stack.mjs";
import { launchBrowser, pageProblems } from "../testkit/browser.mjs";

const shared = { nats: null, pub: null };
let gw;
let target = null; // the gateway the proxy forwards to, when not gw
let browser;
let site; // serves the test page and the module; forwards /sse* to the gateway; refuses WebSocket upgrades
let origin;
const traffic = { upgradesRefused: 0, sseGets: 0, ssePosts: 0, gets: [] }; // gets: {url, frames} of each GET /sse
let upgradeRefusal = "403"; // how the proxy refuses WebSocket upgrades: "403" or "drop"
let tokenAnswer = 200; // what POST /token answers (200 with a fresh token, or 403)
let tokensGiven = 0;

// A page whose module builds clients on request (window.make) and records what they see.
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Telegraphy transports</title></head>
<body><h1>Telegraphy transports</h1>
<script type="module">
  import { Telegraphy } from "/telegraphy.js";
  const clients = {};
  window.make = (key, options) => {
    const log = { states: [], errors: [], events: [], recovered: [], presence: [] };
    const tg = new Telegraphy(options);
    tg.on("state", (s) => log.states.push(s));
    tg.on("error", (e) => log.errors.push(e.code));
    tg.on("recovered", (r) => log.recovered.push(r));
    clients[key] = { tg, log, subs: {} };
  };
  // Every promise handed to the test settles within 10 s, saying what it waited for.
  const bounded = (promise, key, what) =>
    Promise.race([promise, new Promise((r) => setTimeout(() => r(\`timed out: \${what}, \${JSON.stringify(window.info(key))}\`), 10000))]);
  window.sub = (key, pattern) => {
    const c = clients[key];
    const sub = (c.subs[pattern] = c.tg.subscribe(pattern, (e) => c.log.events.push({ name: e.name, data: e.data, sub: e.sub })));
    return bounded(sub.ready().then(() => "active", (e) => e.code), key, \`\${pattern} ready\`);
  };
  // presence (section 11): join/leave go to log.presence; ask(key, channel, "presence" | "presenceStats")
  window.present = (key, channel) => {
    const c = clients[key];
    const sub = (c.subs[channel] = c.tg.subscribe(channel, null, { presence: true }));
    for (const type of ["join", "leave"]) sub.on(type, (m) => c.log.presence.push({ type, ...m }));
    return bounded(sub.ready().then(() => "active", (e) => e.code), key, \`\${channel} present\`);
  };
  window.ask = (key, channel, method) => bounded(clients[key].subs[channel][method](), key, \`\${channel} \${method}\`);
  window.unsub = (key, pattern) => bounded(clients[key].subs[pattern].unsubscribe().then(() => "done"), key, \`\${pattern} unsubscribed\`);
  window.info = (key) => {
    const { tg, log } = clients[key];
    return { state: tg.state, transport: tg.transport, session: tg.session, url: tg.url, ...log };
  };
  window.closeAll = () => Object.values(clients).forEach((c) => c.tg.close());
  window.harness = true;
</script></body></html>`;

// The gateway's SSE endpoint through this server: every request and the streaming response as they are.
function forward(req, res) {
  if (req.method === "GET") {
    traffic.sseGets++;
    traffic.gets.push({ url: req.url, frames: req.headers["x-telegraphy-frames"] ?? null });
  }
  if (req.method === "POST") traffic.ssePosts++;
  const addr = (target || gw).addr;
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), addr.slice(addr.lastIndexOf(":") + 1)];
  const upstream = http.request({ host, port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  upstream.on("error", () => res.destroy());
  res.on("close", () => upstream.destroy()); // the browser went away: so does the gateway's connection
  req.pipe(upstream);
}

before(async () => {
  shared.nats = await NatsServer.start();
  shared.pub = await NatsPublisher.connect(shared.nats.port);
  gw = await Gateway.start(shared.nats, { node: "gw-sse" });
  const probe = await fetch(`${gw.httpUrl}/sse?frames=${encodeURIComponent("[]")}`, { signal: AbortSignal.timeout(5000) }).catch((e) => e);
  assert.ok(probe.status !== 404 && !(probe instanceof Error), `${GATEWAY_BIN} serves no GET /sse: set TELEGRAPHY_GATEWAY_BIN to a gateway with SSE`);
  await probe.body?.cancel();
  site = http.createServer(async (req, res) => {
    try {
      if (req.url === "/") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
      } else if (req.url === "/telegraphy.js") {
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(readFileSync(new URL("../dist/telegraphy.mjs", import.meta.url)));
      } else if (req.url === "/token" && req.method === "POST") {
        if (tokenAnswer !== 200) return void res.writeHead(tokenAnswer).end();
        tokensGiven++;
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: await gw.token({ user: "page", allow: ["t.>"] }) }));
      } else if (req.url.startsWith("/sse")) {
        forward(req, res);
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  // A proxy that breaks WebSockets: the upgrade is answered 403, or the connection dropped.
  site.on("upgrade", (req, socket) => {
    traffic.upgradesRefused++;
    if (upgradeRefusal === "drop") socket.destroy();
    else socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  });
  await new Promise((resolve) => site.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${site.address().port}`;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  site?.closeAllConnections?.();
  site?.close();
  await gw?.stop("SIGKILL");
  shared.pub?.close();
  await shared.nats?.stop();
});

async function openPage(t) {
  const context = await browser.newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const problems = pageProblems(page);
  // every request the page makes (the gateway is another origin: its requests come straight from Chromium)
  const requests = [];
  page.on("request", (r) => requests.push({ url: r.url(), method: r.method(), headers: r.headers() }));
  await page.goto(origin + "/");
  await page.waitForFunction(() => window.harness === true, null, { timeout: 10000 });
  return { page, problems, requests };
}

/**
 * Issue 20: no token in any URL. The SSE GETs carry their frames (the connect with its token or resume token)
 * in the X-Telegraphy-Frames header; returns the connect frames they sent.
 */
function assertNoTokenInUrls(requests) {
  for (const r of requests) assert.doesNotMatch(decodeURIComponent(r.url), /tg1|frames=/, `${r.method} ${r.url}`);
  const gets = requests.filter((r) => r.method === "GET" && new URL(r.url).pathname.endsWith("/sse"));
  assert.ok(gets.length > 0, "the page opened an SSE stream");
  return gets.map((r) => {
    assert.ok(r.headers["x-telegraphy-frames"], `${r.url}: the frames header`);
    return JSON.parse(r.headers["x-telegraphy-frames"])[0];
  });
}

// What Chromium logs by itself for a refused connection (not the client's doing).
const NETWORK_NOISE = /WebSocket connection to .* failed|net::ERR_|Failed to load resource/;

const info = (page, key) => page.evaluate((k) => window.info(k), key);
const until = (page, key, pred, what, ms = 10000) =>
  within(
    ms + 1000,
    page.waitForFunction(({ k, src }) => new Function("i", `return (${src})(i)`)(window.info(k)), { k: key, src: pred.toString() }, { timeout: ms }),
    `${key}: ${what}`,
  );

for (const transport of ["websocket", "sse"]) {
  test(`${transport} in Chromium: connect, subscribe, events, unsubscribe; recovery after the gateway closes the connection (1012)`, async (t) => {
    const { page, problems, requests } = await openPage(t);
    await page.evaluate(([token, url, transports]) => window.make("c", { url, token, transports, minDelay: 100, maxDelay: 1000 }), [
      await gw.token({ allow: ["t.>"] }),
      gw.wsUrl,
      [transport],
    ]);
    assert.equal(await page.evaluate(() => window.sub("c", "t.a.>")), "active");
    assert.equal(await page.evaluate(() => window.sub("c", "t.marker")), "active");
    let now = await info(page, "c");
    assert.deepEqual([now.state, now.transport], ["connected", transport]);

    await shared.pub.publish("t.a.1", { n: 1 });
    await until(page, "c", (i) => i.events.length === 1, "first event");
    assert.deepEqual((await info(page, "c")).events, [{ name: "t.a.1", data: { n: 1 }, sub: "t.a.>" }]);

    // the gateway closes the connection (drain: 1012); events published meanwhile are recovered
    const session = now.session;
    const stopping = Date.now();
    await gw.stop("SIGTERM");
    t.diagnostic(`gateway drained and exited in ${Date.now() - stopping} ms`);
    await until(page, "c", (i) => i.states.includes("reconnecting"), "reconnecting");
    for (const n of [2, 3]) await shared.pub.publish(`t.a.${n}`, { n });
    const restarting = Date.now();
    await gw.restart();
    t.diagnostic(`gateway restarted in ${Date.now() - restarting} ms`);
    await until(page, "c", (i) => i.state === "connected" && i.recovered.length === 2, "connected again, both recovered", 20000);
    t.diagnostic(`connected and recovered ${Date.now() - restarting} ms after the restart began`);
    now = await info(page, "c");
    assert.equal(now.transport, transport, "the same transport after the reconnect");
    assert.equal(now.session, session, "the session resumed (the resume token)");
    assert.deepEqual(now.recovered.map((r) => [r.sub, r.recovered]).sort(), [["t.a.>", true], ["t.marker", true]]);
    await until(page, "c", (i) => i.events.length === 3, "the missed events");
    assert.deepEqual((await info(page, "c")).events.map((e) => e.data.n), [1, 2, 3], "once, in order");

    assert.equal(await page.evaluate(() => window.unsub("c", "t.a.>")), "done", "the gateway answered unsubscribed");
    await shared.pub.publish("t.a.4", { n: 4 });
    await shared.pub.publish("t.marker", { n: "marker" });
    await until(page, "c", (i) => i.events.some((e) => e.sub === "t.marker"), "marker");
    assert.deepEqual((await info(page, "c")).events.map((e) => e.data.n), [1, 2, 3, "marker"], "nothing after unsubscribe");
    assert.deepEqual(now.errors, []);
    assert.deepEqual(problems.filter((p) => !NETWORK_NOISE.test(p)), []);
    if (transport === "sse") {
      const connects = assertNoTokenInUrls(requests);
      assert.ok(connects.length >= 2, "streams before and after the restart");
      assert.ok(connects[0].token.startsWith("tg1."), "the connect token, in the header");
      for (const c of connects.slice(1)) assert.ok(c.resume.startsWith("tg1r."), "then the resume token, in the header");
    }
  });

  test(`${transport} in Chromium: 4001 for a used token stops as unauthorized; 4003 gets one fresh token, a second with the backend refusing stops`, async (t) => {
    const { page, requests } = await openPage(t);
    const token = await gw.token({ allow: ["t.>"] });
    await page.evaluate(([token, url, transports]) => window.make("first", { url, token, transports }), [token, gw.wsUrl, [transport]]);
    await until(page, "first", (i) => i.state === "connected", "first connected");
    await page.evaluate(([token, url, transports]) => window.make("replay", { url, token, transports }), [token, gw.wsUrl, [transport]]);
    await until(page, "replay", (i) => i.state === "unauthorized", "4001: unauthorized");
    assert.equal((await info(page, "replay")).transport, transport);

    tokenAnswer = 200;
    const given = tokensGiven;
    await page.evaluate(([url, transports]) => window.make("revoked", { url, tokenUrl: "/token", transports, minDelay: 100 }), [gw.wsUrl, [transport]]);
    await until(page, "revoked", (i) => i.state === "connected", "connected with a token from /token");
    const firstSession = (await info(page, "revoked")).session;
    await gw.revoke({ session: firstSession });
    await until(page, "revoked", (i) => i.state === "connected" && i.session !== null && i.states.includes("reconnecting"), "4003: a fresh token, connected again");
    const second = await info(page, "revoked");
    assert.notEqual(second.session, firstSession);
    assert.equal(tokensGiven - given, 2, "one token to start, one after the 4003");
    assert.equal(second.transport, transport);

    tokenAnswer = 403; // signed out meanwhile
    await gw.revoke({ session: second.session });
    await until(page, "revoked", (i) => i.state === "unauthorized", "4003 and the backend refuses: unauthorized");
    tokenAnswer = 200;
    await page.evaluate(() => window.closeAll());
    if (transport === "sse") assertNoTokenInUrls(requests);
  });
}

test("SSE without a streaming fetch in Chromium (ReadableStream: null): EventSource, only a single-use connect token in its URL; after a 1012 a fresh token from tokenUrl, never the resume token", async (t) => {
  const { page, problems, requests } = await openPage(t);
  const given = tokensGiven;
  await page.evaluate((url) => window.make("fb", { url, tokenUrl: "/token", transports: ["sse"], ReadableStream: null, minDelay: 100, maxDelay: 1000 }), gw.wsUrl);
  assert.equal(await page.evaluate(() => window.sub("fb", "t.fb")), "active");
  await shared.pub.publish("t.fb", { n: 1 });
  await until(page, "fb", (i) => i.events.length === 1, "first event");
  const first = await info(page, "fb");

  await gw.stop("SIGTERM");
  await until(page, "fb", (i) => i.states.includes("reconnecting"), "reconnecting");
  await shared.pub.publish("t.fb", { n: 2 });
  await gw.restart();
  await until(page, "fb", (i) => i.state === "connected" && i.recovered.length === 1, "connected again, recovered", 20000);
  await until(page, "fb", (i) => i.events.length === 2, "the missed event, from history");
  const now = await info(page, "fb");
  assert.deepEqual(now.events.map((e) => e.data.n), [1, 2]);
  assert.equal(now.recovered[0].recovered, true);
  assert.notEqual(now.session, first.session, "a new session: the resume token was never sent");
  assert.ok(tokensGiven - given >= 2, "a fresh connect token for the reconnect");

  const gets = requests.filter((r) => r.method === "GET" && new URL(r.url).pathname === "/sse");
  assert.ok(gets.length >= 2, "EventSource GETs");
  for (const r of gets) {
    assert.doesNotMatch(r.url, /tg1r/, "never a resume token in a URL");
    const frames = JSON.parse(new URL(r.url).searchParams.get("frames"));
    assert.deepEqual(Object.keys(frames[0]).sort(), ["id", "token", "type"], "a connect token only");
    assert.equal(r.headers["x-telegraphy-frames"], undefined);
  }
  assert.deepEqual(now.errors, []);
  assert.deepEqual(problems.filter((p) => !NETWORK_NOISE.test(p)), []);
  await page.evaluate(() => window.closeAll());
});

for (const refusal of ["403", "drop"]) {
  test(`a proxy that refuses WebSocket upgrades (${refusal}): default transports end on SSE through it, events flow both ways`, async (t) => {
    upgradeRefusal = refusal;
    t.after(() => (upgradeRefusal = "403"));
    const { page, problems } = await openPage(t);
    const before = { ...traffic, gets: traffic.gets.slice() };
    // the page's own origin, as a page behind such a proxy would have it
    await page.evaluate((token) => window.make("p", { url: "/ws", token, minDelay: 100 }), await gw.token({ allow: ["t.>"] }));
    assert.equal(await page.evaluate(() => window.sub("p", "t.p.>")), "active");
    const now = await info(page, "p");
    assert.deepEqual([now.state, now.transport, now.url], ["connected", "sse", origin.replace("http:", "ws:") + "/ws"]);
    assert.ok(traffic.upgradesRefused > before.upgradesRefused, "the WebSocket was tried first, and refused");
    assert.equal(traffic.sseGets - before.sseGets, 1, "one event stream");
    const [get] = traffic.gets.slice(before.gets.length);
    assert.equal(get.url, "/sse", "what the proxy (and its access log) sees: no token, no frames");
    assert.equal(JSON.parse(get.frames)[0].type, "connect", "the frames came in the header");

    for (const n of [1, 2, 3]) await shared.pub.publish(`t.p.${n}`, { n });
    await until(page, "p", (i) => i.events.length === 3, "events through the proxy");
    assert.deepEqual((await info(page, "p")).events.map((e) => e.name), ["t.p.1", "t.p.2", "t.p.3"]);
    // a client frame after open goes up by POST through the proxy; its answer comes down the stream
    assert.equal(await page.evaluate(() => window.sub("p", "t.q")), "active");
    assert.ok(traffic.ssePosts > before.ssePosts, "the subscribe was POSTed");
    await shared.pub.publish("t.q", { q: true });
    await until(page, "p", (i) => i.events.some((e) => e.name === "t.q"), "event of the POSTed subscription");
    assert.deepEqual((await info(page, "p")).errors, []);
    assert.deepEqual(problems.filter((p) => !NETWORK_NOISE.test(p)), []);
  });
}

test("presence over SSE in Chromium: a WebSocket client's join reaches the page, presence() and presenceStats() go by POST, leave on close", async (t) => {
  const { page, problems } = await openPage(t);
  await page.evaluate(([token, url]) => window.make("p", { url, token, transports: ["sse"] }), [await gw.token({ user: "page", allow: ["t.>"] }), gw.wsUrl]);
  assert.equal(await page.evaluate(() => window.present("p", "t.room")), "active");
  const { RecordingWebSocket } = recordingWebSocket();
  const token = await gw.token({ user: "node", allow: ["t.>"], info: { name: "Node" } });
  const other = new Telegraphy({ url: gw.wsUrl, token, WebSocket: RecordingWebSocket });
  t.after(() => other.close());
  await within(10000, other.subscribe("t.room", null, { presence: true }).ready(), "the WebSocket client present");
  await until(page, "p", (i) => i.presence.length === 1, "the join");
  const [join] = (await info(page, "p")).presence;
  assert.deepEqual([join.type, join.user, join.info], ["join", "node", { name: "Node" }]);
  const snapshot = await page.evaluate(() => window.ask("p", "t.room", "presence"));
  assert.deepEqual(snapshot.clients.map((m) => m.user).sort(), ["node", "page"]);
  assert.deepEqual(await page.evaluate(() => window.ask("p", "t.room", "presenceStats")), { clients: 2, users: 2 });
  other.close();
  await until(page, "p", (i) => i.presence.length === 2, "the leave");
  assert.deepEqual((await info(page, "p")).presence[1], { type: "leave", client: join.client, user: "node" });
  const now = await info(page, "p");
  assert.deepEqual([now.transport, now.errors], ["sse", []]);
  assert.deepEqual(problems, []);
});

test("SSE heartbeat through the proxy: the client's pongs go up by POST and keep the connection (heartbeat 1 s)", async (t) => {
  const fast = await Gateway.start(shared.nats, { node: "gw-hb", env: { TELEGRAPHY_HEARTBEAT: "1" } });
  target = fast;
  t.after(async () => {
    target = null;
    await fast.stop("SIGKILL");
  });
  const { page } = await openPage(t);
  await page.evaluate((token) => window.make("hb", { url: "/ws", token, transports: ["sse"] }), await fast.token({ allow: ["t.>"] }));
  assert.equal(await page.evaluate(() => window.sub("hb", "t.hb")), "active");
  const posts = traffic.ssePosts;
  // 4 heartbeat intervals: a client that did not answer would be closed after 2
  await within(10000, (async () => {
    while (traffic.ssePosts < posts + 4) await new Promise((r) => setTimeout(r, 100));
  })(), "4 pongs POSTed");
  await shared.pub.publish("t.hb", { alive: true });
  await until(page, "hb", (i) => i.events.length === 1, "an event after 4 heartbeats");
  const now = await info(page, "hb");
  assert.deepEqual(now.states, ["connecting", "connected"], "never lost");
  assert.equal(now.transport, "sse");
});
