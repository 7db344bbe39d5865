// End to end through the Django demo (examples/demo) in a real browser: a model saved through a Django
// view travels Django -> NATS -> gateway (started by `manage.py run_telegraph`) -> the client served by
// `{% telegraphy_scripts %}`, reaching two tabs within 1 s; permissions in the token keep alice's page
// to her own items; presence shows who is online in the chat and who else views an item, and a count
// instead of the list while the room is over the gateway's join/leave bound; the chat talks back over the
// socket: "is typing" by client publish, messages by tg.rpc("chat.send") answered by a real
// `manage.py telegraphy_worker` (issue 22).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { NatsServer, within } from "../testkit/stack.mjs";
import { DjangoDemo, startDemoGateway } from "../testkit/demo.mjs";
import { launchBrowser, screenshot, pageProblems } from "../testkit/browser.mjs";

let nats;
let gw;
let demo;
let browser;

before(async () => {
  const secret = randomBytes(24).toString("hex");
  nats = await NatsServer.start();
  // join/leave up to 2 members of a channel (default 1000): the presence tests below use 2, and 3 make a crowd
  gw = await startDemoGateway(nats, secret, { TELEGRAPHY_PRESENCE__MAX_JOIN_LEAVE_MEMBERS: "2" });
  demo = await DjangoDemo.start({ nats, secret, gatewayUrl: gw.wsUrl });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
  await gw?.stop("SIGKILL");
  await nats?.stop();
});

async function signIn(context, user) {
  const tab = await context.newPage();
  await tab.goto(`${demo.url}/accounts/login/`);
  await tab.fill("#id_username", user);
  await tab.fill("#id_password", user);
  await Promise.all([tab.waitForURL(`${demo.url}/`, { timeout: 10000 }), tab.click("#login-form button[type=submit]")]);
  return tab;
}

/**
 * Wait until the page's client is connected and the tracker is live: its subscription (named "tracker")
 * confirmed by the gateway and the rows of its filter loaded (the page sets #tracker[data-state]).
 */
async function live(tab) {
  await tab.waitForSelector('#tg-state[data-state="connected"]', { timeout: 10000 });
  await tab.waitForSelector('#tracker[data-state="live"]', { timeout: 10000 });
}

/** Start recording (page clock) when a tracker row named `name` appears / disappears. */
function watchRow(tab, name, key, present = true) {
  return tab.evaluate(
    ([name, key, present]) => {
      window[key] = new Promise((resolve) => {
        const test = () => [...document.querySelectorAll("#tracker li .name")].some((a) => a.textContent === name) === present;
        if (test()) return resolve(Date.now());
        new MutationObserver((_, obs) => {
          if (test()) {
            obs.disconnect();
            resolve(Date.now());
          }
        }).observe(document.getElementById("tracker"), { subtree: true, childList: true, characterData: true });
      });
    },
    [name, key, present],
  );
}

const seen = (tab, key, ms, what) => within(ms, tab.evaluate((key) => window[key], key), what);

async function createItem(editor, name, price) {
  await editor.goto(`${demo.url}/items/new/`);
  await editor.fill("#id_name", name);
  await editor.fill("#id_price", price);
  const t0 = Date.now();
  await Promise.all([editor.waitForURL(`${demo.url}/`, { timeout: 10000 }), editor.click("#item-form button[type=submit]")]);
  return t0;
}

test("Django demo: an item saved through Django reaches two tabs within 1 s; delete removes it; alice sees only hers", async (t) => {
  const admin = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const alice = await browser.newContext({ viewport: { width: 900, height: 700 } });
  try {
    const tab1 = await signIn(admin, "admin");
    const tab2 = await admin.newPage();
    await tab2.goto(`${demo.url}/`);
    const aliceTab = await signIn(alice, "alice");
    const problems = [tab1, tab2, aliceTab].map(pageProblems);
    for (const tab of [tab1, tab2, aliceTab]) await live(tab);

    const name = `Lamp ${randomBytes(3).toString("hex")}`;
    for (const tab of [tab1, tab2]) await watchRow(tab, name, "created");
    const t0 = await createItem(await admin.newPage(), name, "7.25");
    for (const [i, tab] of [tab1, tab2].entries()) {
      const at = await seen(tab, "created", 2000, `tab ${i + 1} shows ${name}`);
      assert.ok(at - t0 < 1000, `tab ${i + 1}: ${at - t0} ms from submit to row`);
      t.diagnostic(`tab ${i + 1}: ${at - t0} ms from form submit to the row on screen`);
    }
    const row = tab2.locator("#tracker li", { hasText: name });
    assert.equal(await row.locator(".price").textContent(), "7.25");
    assert.equal(await row.locator(".owner").textContent(), "admin");
    const pk = await row.getAttribute("data-pk");
    assert.match(pk, /^\d+$/);
    assert.ok(statSync(await screenshot(tab2, "django-demo-tracker")).size > 1000);

    // alice's token allows only demo.mine.<her id>.>: her own item arrives, the admin's never did
    const hers = `Notebook ${randomBytes(3).toString("hex")}`;
    for (const tab of [aliceTab, tab1]) await watchRow(tab, hers, "hers");
    await createItem(await alice.newPage(), hers, "1.00");
    await seen(aliceTab, "hers", 2000, "alice's page shows her item");
    await seen(tab1, "hers", 2000, "the admin's page shows alice's item");
    assert.equal(await aliceTab.locator("#tracker li", { hasText: name }).count(), 0, "alice never received the admin's item");
    assert.match(await aliceTab.textContent("#events"), /^demo\.mine\.\d+\.created\.\d+$/);

    // delete through Django: the row vanishes from both tabs
    for (const tab of [tab1, tab2]) await watchRow(tab, name, "deleted", false);
    const editor = await admin.newPage();
    await editor.goto(`${demo.url}/items/${pk}/`);
    await Promise.all([editor.waitForURL(`${demo.url}/`, { timeout: 10000 }), editor.click("form[action$='/delete/'] button")]);
    for (const [i, tab] of [tab1, tab2].entries()) await seen(tab, "deleted", 2000, `tab ${i + 1} drops ${name}`);
    assert.deepEqual(problems, [[], [], []]);
  } finally {
    await admin.close();
    await alice.close();
  }
});

test("Django demo: signing out on one device revokes alice's sockets; her other device POSTs for a new token (CSRF) and goes on", async () => {
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  try {
    const tab = await signIn(laptop, "alice");
    const problems = pageProblems(tab);
    await live(tab);
    const before = await tab.evaluate(() => Telegraphy.page().session);
    const requests = [];
    tab.on("request", (r) => {
      if (new URL(r.url()).pathname === "/rt/token/") requests.push([r.method(), Boolean(r.headers()["x-csrftoken"])]);
    });
    await tab.evaluate(() => {
      window.backOnline = new Promise((resolve) => {
        const seen = [];
        Telegraphy.page().on("state", (s) => {
          seen.push(s);
          if (s === "connected") resolve(seen);
        });
      });
    });
    const other = await signIn(phone, "alice");
    await Promise.all([other.waitForURL(/\/accounts\/login\//, { timeout: 10000 }), other.click("form[action$='/logout/'] button")]);
    const states = await within(10000, tab.evaluate(() => window.backOnline), "the laptop's client back online");
    assert.deepEqual(states, ["reconnecting", "connected"]);
    assert.notEqual(await tab.evaluate(() => Telegraphy.page().session), before, "a new gateway session");
    assert.deepEqual(requests, [["POST", true]], "one token request, a POST with the page's CSRF token");
    await tab.waitForSelector('#tracker[data-state="live"]', { timeout: 10000 });
    assert.deepEqual(problems, []);
  } finally {
    await laptop.close();
    await phone.close();
  }
});

/** admin and alice signed in, each in a browser context of its own; both closed after fn. */
async function adminAndAlice(fn) {
  const contexts = [await browser.newContext(), await browser.newContext()];
  try {
    const [adminTab, aliceTab] = [await signIn(contexts[0], "admin"), await signIn(contexts[1], "alice")];
    const problems = [adminTab, aliceTab].map(pageProblems);
    await fn({ adminTab, aliceTab });
    assert.deepEqual(problems, [[], []]);
  } finally {
    for (const context of contexts) await context.close();
  }
}

test("Django demo: two users in the chat room see each other online (presence); closing one tab is a leave", () =>
  adminAndAlice(async ({ adminTab, aliceTab }) => {
    const users = [];
    for (const tab of [adminTab, aliceTab]) {
      await tab.goto(`${demo.url}/chat/lobby/`);
      await tab.waitForSelector('#online[data-state="live"]', { timeout: 10000 });
    }
    // the admin's page loaded its snapshot first and learns alice's by her join; hers lists both
    for (const tab of [adminTab, aliceTab]) {
      await tab.waitForFunction(() => document.querySelectorAll("#online li").length === 2, null, { timeout: 10000 });
      users.push(await tab.$$eval("#online li", (lis) => lis.map((li) => li.dataset.user).sort()));
    }
    assert.deepEqual(users[0], users[1]);
    assert.deepEqual(await aliceTab.$$eval("#online li", (lis) => lis.map((li) => li.textContent).sort()), ["admin", "alice"],
      "members by the name of their token's presence info");
    assert.notEqual(users[0][0], users[0][1], "two distinct users");
    await aliceTab.close(); // the browser closes the socket: a leave at once, not after the TTL
    await adminTab.waitForFunction(() => document.getElementById("online-count").textContent === "1", null, { timeout: 10000 });
  }));

test("Django demo: a room over the gateway's join/leave bound shows a count instead of the list, then the list again", () =>
  adminAndAlice(async ({ adminTab, aliceTab }) => {
    const room = `${demo.url}/chat/crowd-${randomBytes(3).toString("hex")}/`;
    const showing = (tab, count, items) =>
      tab.waitForFunction(
        ([count, items]) => document.getElementById("online-count").textContent === count && document.querySelectorAll("#online li").length === items,
        [count, items],
        { timeout: 10000 },
      );
    for (const tab of [adminTab, aliceTab]) {
      await tab.goto(room);
      await tab.waitForSelector('#online[data-state="live"]', { timeout: 10000 });
    }
    for (const tab of [adminTab, aliceTab]) await showing(tab, "2", 2); // at the bound: still a list
    const third = await aliceTab.context().newPage(); // alice's second tab: a session of its own
    const problems = pageProblems(third);
    await third.goto(room);
    for (const tab of [adminTab, aliceTab, third]) await showing(tab, "3", 0); // presence_paused {clients: 3}
    assert.deepEqual(await third.evaluate(() => room.presencePaused), true);
    await third.close(); // a leave: back to 2, presence_resumed, and the pages take the list again
    for (const tab of [adminTab, aliceTab]) await showing(tab, "2", 2);
    assert.deepEqual(await adminTab.$$eval("#online li", (lis) => lis.map((li) => li.textContent).sort()), ["admin", "alice"]);
    assert.deepEqual(problems, []);
  }));

test("Django demo: the owner and the staff on one item page see each other as viewers (presence); a third viewer makes a count", () =>
  adminAndAlice(async ({ adminTab, aliceTab }) => {
    const name = `Vase ${randomBytes(3).toString("hex")}`;
    await createItem(aliceTab, name, "3.00");
    const pk = await aliceTab.locator("#tracker li", { hasText: name }).getAttribute("data-pk");
    for (const tab of [aliceTab, adminTab]) {
      await tab.goto(`${demo.url}/items/${pk}/`);
      await tab.waitForSelector('#viewers[data-state="live"]', { timeout: 10000 });
    }
    // each sees the other (alice's page learns of the admin by his join, his from the snapshot)
    const [aliceSees, adminSees] = await Promise.all(
      [aliceTab, adminTab].map((tab) => tab.waitForFunction(() => document.querySelectorAll("#viewers .viewer").length === 1, null, { timeout: 10000 }).then(() => tab.textContent("#viewers"))),
    );
    assert.notEqual(aliceSees, adminSees, "each lists the other user, not itself");
    // by the name in the token's presence info (the demo's TELEGRAPHY["TOKEN_INFO"]), not a user id
    assert.deepEqual([aliceSees.trim(), adminSees.trim()], ["admin", "alice"]);
    // a third viewer (alice's second tab) takes the item over the gateway's bound of 2: a count, no names
    const third = await aliceTab.context().newPage();
    const problems = pageProblems(third);
    await third.goto(`${demo.url}/items/${pk}/`);
    for (const tab of [aliceTab, adminTab, third]) {
      await tab.waitForFunction(() => document.getElementById("viewers").textContent === "3 viewers", null, { timeout: 10000 });
    }
    await third.close(); // back to 2: presence_resumed, and the pages list the other viewer again
    for (const [tab, other] of [[aliceTab, "admin"], [adminTab, "alice"]]) {
      await tab.waitForFunction((other) => document.getElementById("viewers").textContent.trim() === other, other, { timeout: 10000 });
    }
    assert.deepEqual(problems, []);
    await adminTab.close();
    await aliceTab.waitForFunction(() => document.getElementById("viewers").textContent === "nobody else", null, { timeout: 10000 });
  }));

test("Django demo chat: alice's typing shows on the admin's page (client publish, sender from the gateway); a message goes through tg.rpc(\"chat.send\") and a real telegraphy_worker to both pages and the database; errors show", () =>
  adminAndAlice(async ({ adminTab, aliceTab }) => {
    const worker = await demo.startWorker();
    try {
      const roomName = `talk-${randomBytes(3).toString("hex")}`;
      for (const tab of [adminTab, aliceTab]) {
        await tab.goto(`${demo.url}/chat/${roomName}/`);
        await tab.waitForSelector('#online[data-state="live"]', { timeout: 10000 });
      }
      // each page knows the other's client (its presence info names it): the name a typer is shown by
      for (const tab of [adminTab, aliceTab]) {
        await tab.waitForFunction(() => document.querySelectorAll("#online li").length === 2, null, { timeout: 10000 });
      }
      const typing = (tab, users) =>
        tab.waitForFunction((users) => {
          const el = document.getElementById("typing");
          return users === "" ? el.hidden : !el.hidden && el.dataset.users === users;
        }, users, { timeout: 10000 });

      // alice types: the admin's page shows it; the name comes from the gateway's `from`, never from data
      await aliceTab.evaluate((name) => tg.publish(name, { user: "admin", from: { user: "1", client: "AAAAAAAAAAAAAAAA" } }), `demo.chat.${roomName}.typing`);
      await typing(adminTab, "alice");
      assert.equal(await adminTab.textContent("#typing"), "alice is typing", "forged data changes nothing");
      await adminTab.waitForFunction(() => document.getElementById("typing").hidden, null, { timeout: 10000 }); // hides after a few s
      // every list of typers alice's page shows from now on
      await aliceTab.evaluate(() => {
        const el = document.getElementById("typing");
        window.typersShown = [];
        new MutationObserver(() => window.typersShown.push(el.dataset.users)).observe(el, { attributes: true, attributeFilter: ["data-users"] });
      });
      await aliceTab.type("#chat-text", "hello", { delay: 20 });
      await typing(adminTab, "alice");
      await adminTab.type("#chat-text", "hi", { delay: 20 });
      // alice's own typing came before the admin's over the same gateway: her page never listed herself
      await typing(aliceTab, "admin");
      assert.deepEqual([...new Set(await aliceTab.evaluate(() => window.typersShown))], ["admin"]);
      assert.ok(statSync(await screenshot(aliceTab, "django-demo-chat-typing")).size > 1000);
      await adminTab.fill("#chat-text", "");

      // alice sends: the handler saves and publishes; both pages show it and alice's typing disappears at once
      const text = `hello ${randomBytes(3).toString("hex")}`;
      await aliceTab.fill("#chat-text", text);
      await aliceTab.click("#chat-form button");
      for (const tab of [adminTab, aliceTab]) {
        const li = await tab.waitForSelector(`#messages li:has-text("${text}")`, { timeout: 10000 });
        assert.equal(await li.getAttribute("data-user"), "alice");
        assert.match(await li.getAttribute("data-id"), /^\d+$/);
      }
      await typing(adminTab, "");
      assert.equal(await aliceTab.inputValue("#chat-text"), "", "sent: the input is cleared");
      assert.equal(await aliceTab.isHidden("#chat-error"), true);
      // saved in the database: a fresh load of the room renders it from the Message rows
      await adminTab.reload();
      assert.equal(await adminTab.locator("#messages li", { hasText: text }).count(), 1);

      // the handler's error (whitespace passes the input's `required`, the handler strips it): shown, kept
      await aliceTab.fill("#chat-text", "   ");
      await aliceTab.click("#chat-form button");
      await aliceTab.waitForSelector('#chat-error[data-code="empty"]:not([hidden])', { timeout: 10000 });
      assert.equal(await aliceTab.textContent("#chat-error"), "say something");
      assert.equal(await aliceTab.inputValue("#chat-text"), "   ");

      // no worker: the gateway's error reaches the page the same way
      assert.equal(await worker.stop(), 0, "the worker drains and exits 0 on SIGTERM");
      await aliceTab.fill("#chat-text", "anyone?");
      await aliceTab.click("#chat-form button");
      await aliceTab.waitForSelector('#chat-error[data-code="unavailable"]:not([hidden])', { timeout: 10000 });
      assert.equal(await adminTab.locator("#messages li", { hasText: "anyone?" }).count(), 0);
      assert.ok(statSync(await screenshot(aliceTab, "django-demo-chat")).size > 1000);
    } finally {
      await worker.stop();
    }
  }));
