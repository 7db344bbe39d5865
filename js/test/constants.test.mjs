// proto/constants.json (PROTOCOL.md section 9) against the client's behaviour: the name and
// subscription-name rules, the filter lookups it knows, and what it does on each close code.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { checkConditions, encodeKey, validateName, validatePattern, validateSubName } from "telegraphy-client";
import { flush, online, setup } from "../testkit/fakes.mjs";
import { PROTOCOL } from "../src/constants.js";

const constants = JSON.parse(readFileSync(new URL("../../proto/constants.json", import.meta.url), "utf8"));

test("src/constants.js is proto/constants.json without its comment, deep-frozen (regenerate with scripts/gen-constants)", () => {
  const { comment, ...values } = constants;
  assert.equal(typeof comment, "string");
  assert.deepEqual(PROTOCOL, values);
  const frozen = (v, path) => {
    if (v === null || typeof v !== "object") return;
    assert.ok(Object.isFrozen(v), `${path} is frozen`);
    for (const [k, inner] of Object.entries(v)) frozen(inner, `${path}.${k}`);
  };
  frozen(PROTOCOL, "PROTOCOL");
  assert.throws(() => {
    "use strict";
    PROTOCOL.names.max_tokens = 99;
  }, TypeError);
});
const printable = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i));
/** The characters of a class such as `A-Za-z0-9_-`. */
const classChars = (spec) => new Set(printable.filter((c) => new RegExp(`^[${spec}]$`).test(c)));

test("names: token characters, token count, byte length, wildcards, plain keys", () => {
  const n = constants.names;
  const allowed = classChars(n.token_chars);
  for (const c of printable) assert.equal(validateName(c), allowed.has(c), JSON.stringify(c));
  const tokens = (count) => Array.from({ length: count }, () => "a").join(".");
  assert.equal(validateName(tokens(n.max_tokens)), true);
  assert.equal(validateName(tokens(n.max_tokens + 1)), false);
  assert.equal(validateName("a".repeat(n.max_bytes)), true);
  assert.equal(validateName("a".repeat(n.max_bytes + 1)), false);
  assert.equal(validatePattern(`a.${n.single_wildcard}.b`), true);
  assert.equal(validatePattern(`a.${n.tail_wildcard}`), true);
  assert.equal(validatePattern(`a.${n.tail_wildcard}.b`), false);
  const longest = "k".repeat(n.max_plain_key_chars);
  assert.equal(encodeKey(longest), longest);
  assert.ok(encodeKey(`${longest}k`).startsWith("-"));
});

test("subscription names: characters and length", () => {
  const s = constants.sub_names;
  const allowed = classChars(s.chars);
  for (const c of printable) assert.equal(validateSubName(c), allowed.has(c), JSON.stringify(c));
  assert.equal(validateSubName("a".repeat(s.min_chars - 1)), false);
  assert.equal(validateSubName("a".repeat(s.max_chars)), true);
  assert.equal(validateSubName("a".repeat(s.max_chars + 1)), false);
});

test("filter lookups: each one is read as a lookup, other last parts as fields", () => {
  const { lookups, default_lookup } = constants.filters;
  assert.equal(default_lookup, "exact");
  // `exact` takes any value; every other lookup refuses an object, which a field (exact) takes.
  for (const lookup of lookups) {
    const key = `a__${lookup}`;
    if (lookup === default_lookup) checkConditions({ [key]: {} });
    else assert.throws(() => checkConditions({ [key]: {} }), TypeError, key);
  }
  for (const field of ["gtee", "year", "date", "search", "ne", "isempty", "overlap", "Exact"]) {
    assert.ok(!lookups.includes(field));
    checkConditions({ [`a__${field}`]: {} });
  }
});

/** What the client does after a close with `code` on a connected socket (`token` and `getToken` as given). */
async function afterClose(code, options = {}) {
  const ctx = setup(options);
  const socket = await online(ctx);
  socket.serverClose(code);
  await flush();
  return ctx;
}

const minDelay = 500; // the client's default smallest backoff

const behaviours = {
  reconnect: async (code) => {
    const ctx = await afterClose(code);
    assert.equal(ctx.tg.state, "reconnecting", `${code}`);
    assert.ok(ctx.clock.nextDelay() >= minDelay, `${code}: with backoff`);
  },
  reconnect_at_once: async (code) => {
    const ctx = await afterClose(code);
    assert.equal(ctx.tg.state, "reconnecting", `${code}`);
    assert.equal(ctx.clock.nextDelay(), 0, `${code}: at once`);
  },
  stop: async (code) => {
    const ctx = await afterClose(code);
    assert.equal(ctx.tg.state, "disconnected", `${code}`);
    assert.equal(ctx.errors.at(-1).closeCode, code);
    assert.equal(ctx.clock.nextDelay(), null, `${code}: no retry`);
  },
  new_token: async (code) => {
    // Refused at connect: the token is spent; a new one comes from getToken, else the client stops.
    let calls = 0;
    const ctx = setup({ getToken: async () => `tg1.fresh${++calls}` });
    await flush();
    ctx.ws.last().accept();
    ctx.ws.last().serverClose(code);
    await ctx.clock.advance(ctx.clock.nextDelay());
    ctx.ws.last().accept();
    assert.equal(ctx.ws.last().frames("connect")[0].token, "tg1.fresh1", `${code}: a new token`);
    const without = setup();
    await flush();
    without.ws.last().accept();
    without.ws.last().serverClose(code);
    assert.equal(without.tg.state, "unauthorized", `${code}: no token source`);
  },
};

for (const [name, { code, client }] of Object.entries(constants.close_codes)) {
  test(`close code ${code} (${name}): the client does "${client}"`, async () => {
    assert.ok(behaviours[client], `unknown client behaviour ${client}`);
    await behaviours[client](code);
  });
}
