// The package as shipped: the generated <script> build, the type declarations, package.json exports,
// and the reconnect delay function's bounds.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import vm from "node:vm";
import { render, SOURCE, TARGET, DJANGO_COPY } from "../build.mjs";
import * as mod from "../telegraphy.js";

const read = (p) => readFileSync(new URL(p, import.meta.url), "utf8");

test("dist/telegraphy.global.js and the Django app's copy are up to date with telegraphy.js (run `node build.mjs`)", () => {
  const built = render(readFileSync(SOURCE, "utf8"));
  assert.equal(readFileSync(TARGET, "utf8"), built);
  assert.equal(readFileSync(DJANGO_COPY, "utf8"), built, "python/telegraphy/static/telegraphy/telegraphy.js");
});

test("the <script> build defines exactly one global, Telegraphy, with the helpers", () => {
  const sandbox = { TextEncoder, TextDecoder, atob, btoa, queueMicrotask, URL, console };
  const before = new Set(Object.keys(sandbox));
  vm.createContext(sandbox);
  vm.runInContext(readFileSync(TARGET, "utf8"), sandbox, { filename: "telegraphy.global.js" });
  assert.deepEqual(Object.keys(sandbox).filter((k) => !before.has(k)), ["Telegraphy"]);
  const T = sandbox.Telegraphy;
  assert.equal(typeof T, "function");
  assert.equal(T.matches("shop.order.>", "shop.order.created.42"), true);
  assert.equal(T.contains("shop.>", "shop.order.*.42"), true);
  assert.equal(T.validateName("a.*"), false);
  assert.equal(T.encodeKey("a b"), "-YSBi");
  assert.equal(typeof T.register, "function");
  assert.equal(typeof T.fromPage, "function");
});

test("the build refuses export forms it cannot strip", () => {
  assert.throws(() => render("export default 1;\n"), /unsupported export/);
  assert.throws(() => render("export { a };\n"), /unsupported export/);
  assert.throws(() => render('import x from "y";\n'), /must not import/);
});

test("telegraphy.d.ts declares every runtime export and static helper", () => {
  const dts = read("../telegraphy.d.ts");
  for (const name of Object.keys(mod)) {
    assert.match(dts, new RegExp(`export declare (?:class|function) ${name}\\b`), `declaration of ${name}`);
  }
  for (const name of Object.keys(mod.Telegraphy)) {
    assert.match(dts, new RegExp(`static ${name}\\b`), `static ${name}`);
  }
  for (const name of ["subscribe", "on", "off", "connect", "close", "fromPage", "register", "page"]) {
    assert.match(dts, new RegExp(`\\b${name}(?:<[^>]*>)?\\(`), name);
  }
});

test("package.json: name, ES module, exports and types resolve to real files", () => {
  const pkg = JSON.parse(read("../package.json"));
  assert.equal(pkg.name, "telegraphy-client");
  assert.equal(pkg.type, "module");
  assert.deepEqual(pkg.dependencies ?? {}, {});
  const require = createRequire(import.meta.url);
  for (const file of [pkg.exports["."].default, pkg.exports["."].types, pkg.exports["./global"], pkg.types]) {
    assert.ok(readFileSync(require.resolve(new URL(file, new URL("../", import.meta.url)).pathname)).length > 0, file);
  }
  for (const file of pkg.files) assert.ok(read(`../${file}`).length > 0, file);
});

test("telegraphy.js imports nothing (no runtime dependencies)", () => {
  assert.doesNotMatch(read("../telegraphy.js"), /^\s*import\b/m);
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
