// Filter and exclude conditions (PROTOCOL.md section 8): the JSON type each lookup's value must have (the
// gateway refuses the same with bad_request; it evaluates filters and checks the rest: regex syntax, sizes
// and counts), and the canonical text that makes equal filters compare equal.
import { PROTOCOL } from "./constants.js";

const isText = (v) => typeof v === "string";
const isOrdered = (v) => typeof v === "string" || Number.isFinite(v);
const ANY = [() => true, ""];
const TEXT = [isText, "a string"];
const ORDERED = [isOrdered, "a number or a string"];
const SHAPES = {
  exact: ANY,
  iexact: [(v) => v === null || isText(v), "a string or null"],
  contains: TEXT,
  icontains: TEXT,
  startswith: TEXT,
  istartswith: TEXT,
  endswith: TEXT,
  iendswith: TEXT,
  in: [(v) => Array.isArray(v), "a list"],
  gt: ORDERED,
  gte: ORDERED,
  lt: ORDERED,
  lte: ORDERED,
  range: [(v) => Array.isArray(v) && v.length === 2 && v.every(isOrdered), "[low, high] of numbers or strings"],
  isnull: [(v) => typeof v === "boolean", "true or false"],
  regex: TEXT,
  iregex: TEXT,
};
// The lookups of the protocol; one the client has no shape for takes any value (the gateway judges it).
const LOOKUPS = new Set(PROTOCOL.filters.lookups);
const DEFAULT_LOOKUP = PROTOCOL.filters.default_lookup;
const shapeOf = (lookup) => (Object.prototype.hasOwnProperty.call(SHAPES, lookup) ? SHAPES[lookup] : ANY);

/**
 * Throws a TypeError when `conditions` is not a well-shaped filter/exclude object
 * ({"field__lookup": value}); returns null for an absent or empty one, else the object.
 */
export function checkConditions(conditions, what = "filter") {
  if (conditions === undefined || conditions === null) return null;
  if (typeof conditions !== "object" || Array.isArray(conditions)) {
    throw new TypeError(`Telegraphy: ${what} must be an object of "field__lookup": value`);
  }
  const keys = Object.keys(conditions);
  for (const key of keys) {
    const value = conditions[key];
    if (key === "" || key.split("__").some((part) => part === "")) {
      throw new TypeError(`Telegraphy: ${what} key ${JSON.stringify(key)} has an empty field`);
    }
    if (value === undefined || typeof value === "function" || typeof value === "symbol" || typeof value === "bigint") {
      throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs a JSON value`);
    }
    // The last part is the lookup when it is one and something precedes it, else a field (the default lookup).
    const last = key.slice(key.lastIndexOf("__") + 2);
    const shape = shapeOf(key.includes("__") && LOOKUPS.has(last) ? last : DEFAULT_LOOKUP);
    if (!shape[0](value)) throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs ${shape[1]}`);
  }
  return keys.length ? conditions : null;
}

/** JSON with object keys sorted: equal filters give equal text. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
