// Filter and exclude conditions (PROTOCOL.md section 8): the JSON type each lookup's value must have and the
// fixed limits (values in an `in` list, bytes of a regex, bytes of filter + exclude): the gateway refuses the
// same with bad_request. It evaluates filters and checks the rest: regex syntax, and the counts its settings
// may change (limits.max_filter_conditions, limits.max_regex_conditions). And the canonical text that makes
// equal filters compare equal.
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
const LIMITS = PROTOCOL.filters.limits;
const MAX_IN_VALUES = LIMITS.max_in_values.default;
const MAX_REGEX_BYTES = LIMITS.max_regex_bytes.default;
const MAX_BYTES = LIMITS.max_bytes.default;
const REGEX = new Set(["regex", "iregex"]);
const utf8Length = (text) => new TextEncoder().encode(text).length;
// Bytes of compact JSON, as the gateway counts them (0 for an absent clause).
const jsonBytes = (value) => (value === null || value === undefined ? 0 : utf8Length(JSON.stringify(value)));
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
    const lookup = key.includes("__") && LOOKUPS.has(last) ? last : DEFAULT_LOOKUP;
    const shape = shapeOf(lookup);
    if (!shape[0](value)) throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} needs ${shape[1]}`);
    if (lookup === "in" && value.length > MAX_IN_VALUES) {
      throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} has more than ${MAX_IN_VALUES} values`);
    }
    if (REGEX.has(lookup) && utf8Length(value) > MAX_REGEX_BYTES) {
      throw new TypeError(`Telegraphy: ${what} ${JSON.stringify(key)} is a regex over ${MAX_REGEX_BYTES} bytes`);
    }
  }
  if (keys.length) checkSize({ [what]: conditions });
  return keys.length ? conditions : null;
}

/** Throws a TypeError when filter + exclude ({filter, exclude}, null = absent) are over the size limit. */
export function checkSize(spec) {
  if (jsonBytes(spec.filter) + jsonBytes(spec.exclude) > MAX_BYTES) {
    throw new TypeError(`Telegraphy: filter and exclude are over ${MAX_BYTES} bytes of JSON`);
  }
}

/** JSON with object keys sorted: equal filters give equal text. */
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
