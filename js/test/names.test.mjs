// Section 1 (names, patterns, match, containment) and model keys against the shared proto vectors.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { validateName, validatePattern, matches, contains, encodeKey, decodeKey } from "telegraphy-client";

const vectors = (file) => JSON.parse(readFileSync(new URL(`../../proto/vectors/${file}`, import.meta.url), "utf8"));

test("names.json: valid and invalid names and patterns", () => {
  const v = vectors("names.json");
  for (const name of v.valid_names) assert.equal(validateName(name), true, `valid name ${JSON.stringify(name)}`);
  for (const name of v.invalid_names) assert.equal(validateName(name), false, `invalid name ${JSON.stringify(name)}`);
  for (const p of v.valid_patterns) assert.equal(validatePattern(p), true, `valid pattern ${JSON.stringify(p)}`);
  for (const p of v.invalid_patterns) assert.equal(validatePattern(p), false, `invalid pattern ${JSON.stringify(p)}`);
  // every valid name is also a valid pattern
  for (const name of v.valid_names) assert.equal(validatePattern(name), true, name);
});

test("names: non-strings are invalid", () => {
  for (const x of [undefined, null, 42, {}, ["a"]]) {
    assert.equal(validateName(x), false);
    assert.equal(validatePattern(x), false);
  }
});

test("match.json", () => {
  const { cases } = vectors("match.json");
  assert.ok(cases.length > 10);
  for (const c of cases) assert.equal(matches(c.pattern, c.name), c.match, `${c.pattern} ~ ${c.name}`);
});

test("match: a name matches itself", () => {
  for (const name of vectors("names.json").valid_names) assert.equal(matches(name, name), true, name);
});

test("contains.json", () => {
  const { cases } = vectors("contains.json");
  assert.ok(cases.length > 10);
  for (const c of cases) assert.equal(contains(c.outer, c.inner), c.contains, `${c.outer} ⊇ ${c.inner}`);
});

test("contains agrees with match on the match vectors", () => {
  // If A contains the name N (as a pattern), A matches N.
  for (const c of vectors("match.json").cases) assert.equal(contains(c.pattern, c.name), c.match, `${c.pattern} ⊇ ${c.name}`);
});

test("keys.json: encodeKey and decodeKey", () => {
  const { cases } = vectors("keys.json");
  for (const c of cases) {
    assert.equal(encodeKey(c.key), c.token, `encode ${JSON.stringify(c.key)}`);
    assert.equal(decodeKey(c.token), c.key, `decode ${c.token}`);
    assert.equal(validateName(`shop.order.created.${c.token}`), true, c.token);
  }
  assert.equal(encodeKey(42), "42");
});
