// The package as shipped: the esbuild bundles (up to date, deterministic, the <script> build's one global),
// the type declarations, package.json exports, the tarball `npm pack` makes (installed into a fresh project,
// imported under node, bundled by esbuild, type-checked by tsc), and the reconnect delay function's bounds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import vm from "node:vm";
import * as esbuild from "esbuild";
import { render, stale, ESM, GLOBAL, DJANGO_COPY } from "../build.mjs";
import * as mod from "telegraphy-client";

const read = (p) => readFileSync(new URL(p, import.meta.url), "utf8");
const JS = fileURLToPath(new URL("../", import.meta.url));
const require = createRequire(import.meta.url);

/** Runs a command to its end (bounded): {code, output}. */
const run = (cmd, args, cwd, timeout = 110000) =>
  new Promise((resolve) =>
    execFile(cmd, args, { cwd, timeout, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, output: `${stdout}${stderr}` }),
    ),
  );

test("dist/telegraphy.mjs, dist/telegraphy.global.js and the Django app's copy are up to date with src/ (run `node build.mjs`)", async () => {
  assert.deepEqual(await stale(), []);
  const built = await render();
  assert.deepEqual([...built.keys()], [ESM, GLOBAL, DJANGO_COPY]);
  assert.equal(built.get(DJANGO_COPY), built.get(GLOBAL), "the Django app ships the <script> build");
  const again = await render();
  for (const [file, text] of built) assert.equal(again.get(file), text, `${file}: the same bytes every time`);
  const check = await run(process.execPath, ["build.mjs", "--check"], JS);
  assert.equal(check.code, 0, check.output);
});

test("the <script> build defines exactly one global, Telegraphy, with the helpers", () => {
  const sandbox = { TextEncoder, TextDecoder, atob, btoa, queueMicrotask, URL, console };
  const before = new Set(Object.keys(sandbox));
  vm.createContext(sandbox);
  vm.runInContext(readFileSync(GLOBAL, "utf8"), sandbox, { filename: "telegraphy.global.js" });
  assert.deepEqual(Object.keys(sandbox).filter((k) => !before.has(k)), ["Telegraphy"]);
  const T = sandbox.Telegraphy;
  assert.equal(typeof T, "function");
  assert.equal(T.name, "Telegraphy");
  assert.deepEqual(Object.keys(T).sort(), Object.keys(mod.Telegraphy).sort(), "the same statics as the module's class");
  assert.equal(T.matches("shop.order.>", "shop.order.created.42"), true);
  assert.equal(T.contains("shop.>", "shop.order.*.42"), true);
  assert.equal(T.validateName("a.*"), false);
  assert.equal(T.encodeKey("a b"), "-YSBi");
  assert.equal(typeof T.register, "function");
  assert.equal(typeof T.fromPage, "function");
  assert.equal(new T.TelegraphyError("x", "y").code, "x");
});

test("the module build is one file: it imports nothing (no runtime dependencies)", () => {
  const esm = readFileSync(ESM, "utf8");
  assert.doesNotMatch(esm, /^\s*import\b|\bimport\(|\brequire\(/m);
  assert.deepEqual(Object.keys(mod).sort(), ["RpcError", "Subscription", "Telegraphy", "TelegraphyError", "backoffDelay", "checkConditions", "contains", "decodeKey", "encodeKey", "matches", "validateName", "validatePattern", "validateSubName"]);
});

test("telegraphy.d.ts declares every runtime export and static helper", () => {
  const dts = read("../telegraphy.d.ts");
  for (const name of Object.keys(mod)) {
    assert.match(dts, new RegExp(`export declare (?:class|function) ${name}\\b`), `declaration of ${name}`);
  }
  for (const name of Object.keys(mod.Telegraphy)) {
    assert.match(dts, new RegExp(`static ${name}\\b`), `static ${name}`);
  }
  for (const name of ["subscribe", "on", "off", "connect", "close", "fromPage", "register", "page", "publish", "rpc"]) {
    assert.match(dts, new RegExp(`\\b${name}(?:<[^>]*>)?\\(`), name);
  }
});

test("Telegraphy.version is the package's version (one VERSION for the three packages)", () => {
  const pkg = JSON.parse(read("../package.json"));
  assert.equal(mod.Telegraphy.version, pkg.version);
  assert.equal(read("../../VERSION").trim(), pkg.version);
});

test("package.json: name, ES module, exports and types resolve to real files", () => {
  const pkg = JSON.parse(read("../package.json"));
  assert.equal(pkg.name, "telegraphy-client");
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.dependencies ?? {}, {});
  for (const file of [pkg.main, pkg.exports["."].default, pkg.exports["."].types, pkg.exports["./global"], pkg.types]) {
    assert.ok(readFileSync(join(JS, file)).length > 0, file);
  }
  for (const file of pkg.files) assert.ok(read(`../${file}`).length > 0, file);
  assert.equal(require.resolve("telegraphy-client/global"), GLOBAL);
  // the <script> build sets a global: a bundler must keep `import "telegraphy-client/global"`
  assert.deepEqual(pkg.sideEffects, ["./dist/telegraphy.global.js"]);
});

test("npm pack: the tarball installs into a fresh project, imports under node, bundles with esbuild, type-checks with tsc", { timeout: 300000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "telegraphy-pack-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const npm = process.platform === "win32" ? "npm.cmd" : "npm";
  const packed = await run(npm, ["pack", "--json", "--pack-destination", dir, "--loglevel=error"], JS);
  assert.equal(packed.code, 0, packed.output);
  const [info] = JSON.parse(packed.stdout);
  assert.deepEqual(info.files.map((f) => f.path).sort(), ["README.md", "dist/telegraphy.global.js", "dist/telegraphy.mjs", "package.json", "telegraphy.d.ts"]);

  const app = join(dir, "app");
  mkdirSync(app);
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
  const installed = await run(npm, ["install", join(dir, info.filename), "--offline", "--no-audit", "--no-fund", "--loglevel=error"], app);
  assert.equal(installed.code, 0, installed.output);

  // node: the package's entry, the global build through its export
  writeFileSync(
    join(app, "use.mjs"),
    `import { Telegraphy, matches, TelegraphyError } from "telegraphy-client";
import { createRequire } from "node:module";
const tg = new Telegraphy({ url: "ws://127.0.0.1:9/ws", autoConnect: false, WebSocket: class {} });
console.log(JSON.stringify({ state: tg.state, matches: matches("a.>", "a.b"), error: new TelegraphyError("c", "m").code,
  global: createRequire(import.meta.url).resolve("telegraphy-client/global").endsWith("dist/telegraphy.global.js") }));
`,
  );
  const ran = await run(process.execPath, ["use.mjs"], app);
  assert.equal(ran.code, 0, ran.output);
  assert.deepEqual(JSON.parse(ran.stdout), { state: "disconnected", matches: true, error: "c", global: true });

  // esbuild: a browser bundle of an app importing the package (what a user's build does)
  const bundled = await esbuild.build({
    absWorkingDir: app,
    entryPoints: ["use.mjs"],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    external: ["node:module"],
    logLevel: "silent",
  });
  const text = bundled.outputFiles[0].text;
  assert.match(text, /class Telegraphy|Telegraphy = class/);
  assert.doesNotMatch(text, /from "telegraphy-client"/, "the package was inlined");

  // tsc --strict: the declarations as the installed package exposes them
  writeFileSync(
    join(app, "use.ts"),
    `import { Telegraphy, type Subscription, checkConditions } from "telegraphy-client";
const tg: Telegraphy = new Telegraphy({ url: "wss://rt.example/ws", tokenUrl: "/token", transports: ["sse"] });
const sub: Subscription = tg.subscribe("shop.order.>", (e) => console.log(e.name, e.sub), { filter: { total__gte: 10 } });
checkConditions({ a__in: [1] });
void sub.unsubscribe();
`,
  );
  const tsc = require.resolve("typescript/bin/tsc");
  const args = [tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "--lib", "es2022,dom", "use.ts"];
  const checked = await run(process.execPath, args, app);
  assert.equal(checked.code, 0, checked.output);
  // and tsc finds a wrong use
  writeFileSync(join(app, "bad.ts"), `import { Telegraphy } from "telegraphy-client";\nnew Telegraphy({ url: 42 });\n`);
  const refused = await run(process.execPath, [...args.slice(0, -1), "bad.ts"], app);
  assert.notEqual(refused.code, 0, "a number as url is a type error");
});

test("backoff: always within 0.5 s .. 20 s, growing window, full jitter", () => {
  for (let attempt = 0; attempt < 64; attempt++) {
    for (const r of [0, 1e-9, 0.25, 0.5, 0.75, 0.999999999]) {
      const d = mod.backoffDelay(attempt, () => r);
      assert.ok(d >= 500 && d <= 20000, `attempt ${attempt} r ${r}: ${d}`);
      assert.ok(d <= 500 + 500 * 2 ** attempt, `window of attempt ${attempt}`);
    }
  }
  assert.equal(mod.backoffDelay(0, () => 0), 500);
  assert.equal(mod.backoffDelay(0, () => 0.999999), 999);
  assert.equal(mod.backoffDelay(3, () => 0.5), 2500);
  assert.equal(mod.backoffDelay(1000, () => 0.999999), 20000);
  // jitter: real randomness spreads the delays over the window
  const seen = new Set(Array.from({ length: 200 }, () => Math.floor(mod.backoffDelay(10, Math.random) / 1000)));
  assert.ok(seen.size >= 10, `spread over ${seen.size} seconds`);
  // custom bounds
  assert.equal(mod.backoffDelay(50, () => 0.99, 100, 1000), 1000);
  assert.equal(mod.backoffDelay(0, () => 0, 100, 1000), 100);
});
