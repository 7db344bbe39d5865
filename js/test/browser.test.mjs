// A real browser (Debian chromium, headless) loads the client both ways, as a classic <script>
// (dist/telegraphy.global.js, configured by <script id="telegraphy-config">, old register() API) and as
// an ES module, against the real gateway + nats-server. Events published to NATS reach two tabs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync, statSync } from "node:fs";
import { NatsServer, NatsPublisher, Gateway, within } from "../testkit/stack.mjs";
import { launchBrowser, screenshot, pageProblems } from "../testkit/browser.mjs";

const FILES = {
  "/telegraphy.js": "../dist/telegraphy.mjs",
  "/dist/telegraphy.global.js": "../dist/telegraphy.global.js",
};

let nats;
let pub;
let gw;
let server;
let origin;
let browser;

function page(config, moduleToken) {
  const json = JSON.stringify(config).replace(/</g, "\\u003c");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Telegraphy browser test</title>
<style>body{font-family:sans-serif;margin:2em} li{font-family:monospace}</style></head>
<body>
<h1>Telegraphy</h1>
<p>script build: <b id="state-global">-</b> &middot; ES module: <b id="state-module">-</b></p>
<h2>Received (script build, register)</h2><ul id="global-events"></ul>
<h2>Received (ES module, subscribe)</h2><ul id="module-events"></ul>
<script id="telegraphy-config" type="application/json">${json}</script>
<script src="/dist/telegraphy.global.js"></script>
<script>
  window.received = { global: [], module: [] };
  function show(list, e) {
    window.received[list].push({ name: e.name, data: e.data, sub: e.sub, at: Date.now() });
    const li = document.createElement("li");
    li.textContent = e.name + " " + JSON.stringify(e.data);
    document.getElementById(list + "-events").append(li);
  }
  Telegraphy.page().on("state", (s) => (document.getElementById("state-global").textContent = s));
  window.globalSub = Telegraphy.register("b.>", (e) => show("global", e));
</script>
<script type="module">
  import { Telegraphy, matches } from "/telegraphy.js";
  const tg = new Telegraphy({ url: ${JSON.stringify(config.url)}, token: ${JSON.stringify(moduleToken)} });
  tg.on("state", (s) => (document.getElementById("state-module").textContent = s));
  const sub = tg.subscribe("b.*.created.*", (e) => show("module", e));
  window.moduleMatches = matches("b.*.created.*", "b.order.created.1");
  Promise.all([sub.ready(), window.globalSub.ready()]).then(
    () => (window.ready = true),
    (err) => (window.ready = "failed: " + err.code),
  );
</script>
</body></html>`;
}

before(async () => {
  nats = await NatsServer.start();
  pub = await NatsPublisher.connect(nats.port);
  gw = await Gateway.start(nats);
  server = http.createServer(async (req, res) => {
    try {
      if (req.url === "/") {
        // like the Django template tag: fresh single-use tokens for every page view
        const [pageToken, moduleToken] = await Promise.all([gw.token({ allow: ["b.>"] }), gw.token({ allow: ["b.>"] })]);
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        res.end(page({ url: gw.wsUrl, token: pageToken }, moduleToken));
      } else if (FILES[req.url]) {
        const file = new URL(FILES[req.url], import.meta.url);
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "content-length": statSync(file).size });
        res.end(readFileSync(file));
      } else if (req.url === "/favicon.ico") {
        res.writeHead(204).end();
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${server.address().port}`;
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  server?.close();
  await gw?.stop("SIGKILL");
  pub?.close();
  await nats?.stop();
});

test("script build and ES module in two tabs: a NATS event reaches both within 1 s", async (t) => {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  try {
    const tabs = [await context.newPage(), await context.newPage()];
    const problems = tabs.map(pageProblems);
    for (const tab of tabs) {
      await tab.goto(origin + "/");
      await tab.waitForFunction(() => window.ready !== undefined, null, { timeout: 10000 });
      assert.equal(await tab.evaluate(() => window.ready), true);
      assert.equal(await tab.evaluate(() => window.moduleMatches), true);
      assert.equal(await tab.textContent("#state-global"), "connected");
      assert.equal(await tab.textContent("#state-module"), "connected");
    }

    const sentAt = Date.now();
    await pub.publish("b.order.created.1", { pk: 1, total: "9.50" });
    for (const tab of tabs) {
      await tab.waitForFunction(
        () => window.received.global.length > 0 && window.received.module.length > 0,
        null,
        { timeout: 1000 },
      );
    }
    for (const [i, tab] of tabs.entries()) {
      const got = await tab.evaluate(() => window.received);
      for (const [list, sub] of [["global", "b.>"], ["module", "b.*.created.*"]]) {
        assert.equal(got[list].length, 1, `tab ${i} ${list}`);
        const [e] = got[list];
        assert.deepEqual({ name: e.name, data: e.data, sub: e.sub }, { name: "b.order.created.1", data: { pk: 1, total: "9.50" }, sub });
        assert.ok(e.at - sentAt < 1000, `tab ${i} ${list}: ${e.at - sentAt} ms`);
        t.diagnostic(`tab ${i} ${list}: ${e.at - sentAt} ms from NATS publish to handler`);
      }
      assert.match(await tab.textContent("#global-events"), /b\.order\.created\.1/);
    }
    const path = await screenshot(tabs[1], "browser-two-tabs");
    assert.ok(statSync(path).size > 1000);
    assert.deepEqual(problems, [[], []]);
  } finally {
    await context.close();
  }
});

test("the page's client survives a gateway restart in the browser", async () => {
  const context = await browser.newContext();
  try {
    const tab = await context.newPage();
    await tab.goto(origin + "/");
    await tab.waitForFunction(() => window.ready === true, null, { timeout: 10000 });
    const stopped = gw.stop("SIGTERM");
    await tab.waitForFunction(() => document.getElementById("state-global").textContent === "reconnecting", null, { timeout: 10000 });
    await stopped;
    await gw.restart();
    await tab.waitForFunction(
      () => ["state-global", "state-module"].every((id) => document.getElementById(id).textContent === "connected"),
      null,
      { timeout: 25000 },
    );
    // re-subscribed: wait on the subscriptions themselves, then publish
    await tab.evaluate(() => window.globalSub.ready());
    await within(5000, pub.publish("b.order.created.2", { pk: 2 }), "publish");
    await tab.waitForFunction(() => window.received.global.some((e) => e.data.pk === 2), null, { timeout: 2000 });
  } finally {
    await context.close();
  }
});
