// Event names, patterns and model event keys (PROTOCOL.md sections 1, 2 and 8's subscription names): the one JS
// place for these rules, every number and character class from constants.js.
import { PROTOCOL } from "./constants.js";

const { max_tokens: MAX_TOKENS, max_bytes: MAX_BYTES, token_chars, single_wildcard: ANY, tail_wildcard: TAIL, max_plain_key_chars } = PROTOCOL.names;
const TOKEN = new RegExp(`^[${token_chars}]+$`);

function wellFormed(text, wildcards) {
  // Valid text is ASCII, so its length in characters is its length in bytes; anything longer than
  // MAX_BYTES characters has at least as many bytes.
  if (typeof text !== "string" || text.length === 0 || text.length > MAX_BYTES) return false;
  const tokens = text.split(".");
  if (tokens.length > MAX_TOKENS) return false;
  const last = tokens.length - 1;
  for (let i = 0; i <= last; i++) {
    const t = tokens[i];
    if (wildcards && (t === ANY || (t === TAIL && i === last))) continue;
    if (!TOKEN.test(t)) return false;
  }
  return true;
}

/** True when `name` is a valid event name (no wildcards). */
export function validateName(name) {
  return wellFormed(name, false);
}

/** True when `pattern` is a valid pattern (`*` any token, `>` as last token). */
export function validatePattern(pattern) {
  return wellFormed(pattern, true);
}

/** True when valid pattern `pattern` matches valid name `name`. */
export function matches(pattern, name) {
  const p = pattern.split(".");
  const n = name.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === TAIL) return n.length > i;
    if (i >= n.length) return false;
    if (p[i] !== ANY && p[i] !== n[i]) return false;
  }
  return p.length === n.length;
}

/** True when every name that pattern `inner` matches, pattern `outer` matches too. */
export function contains(outer, inner) {
  const a = outer.split(".");
  const b = inner.split(".");
  for (let i = 0; i < b.length; i++) {
    if (i >= a.length) return false;
    if (a[i] === TAIL) return true;
    if (b[i] === TAIL) return false;
    if (a[i] !== ANY && a[i] !== b[i]) return false;
  }
  return a.length === b.length;
}

// ---- model event keys (section 2) ----

// A plain key: token characters, not starting with "-" (which marks an encoded one).
const PLAIN_KEY = new RegExp(`^(?!-)[${token_chars}]{1,${max_plain_key_chars}}$`);

/** The name token of a model's primary key: str(pk) as is, else "-" + base64url(utf8). */
export function encodeKey(pk) {
  const text = String(pk);
  if (PLAIN_KEY.test(text)) return text;
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return "-" + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Inverse of encodeKey: the str(pk) a name's key token stands for. Throws on a malformed token. */
export function decodeKey(token) {
  if (!token.startsWith("-")) return token;
  const binary = atob(token.slice(1).replace(/-/g, "+").replace(/_/g, "/"));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

const ACTIONS = { created: "created", updated: "updated", deleted: "deleted" };

/**
 * The parts of a model event's name, or null when it is none. In every model event the action and the key
 * are the last two tokens (section 2): the standard `<app>.<model>.<action>.<key>`, or an application's own
 * space such as `demo.mine.<owner>.<action>.<key>`.
 */
export function modelEvent(name) {
  const t = name.split(".");
  const n = t.length;
  if (n < 3 || !Object.prototype.hasOwnProperty.call(ACTIONS, t[n - 2])) return null;
  let key;
  try {
    key = decodeKey(t[n - 1]);
  } catch {
    return null;
  }
  const standard = n === 4;
  return { app: standard ? t[0] : null, model: standard ? t[1] : null, scope: t.slice(0, n - 2).join("."), action: t[n - 2], key };
}

// ---- subscription names (section 8) ----

const { chars: SUB_CHARS, min_chars: SUB_MIN, max_chars: SUB_MAX } = PROTOCOL.sub_names;
const SUB_NAME = new RegExp(`^[${SUB_CHARS}]{${SUB_MIN},${SUB_MAX}}$`);

/** True when `name` may name a subscription (`sub`, section 8). */
export function validateSubName(name) {
  return typeof name === "string" && SUB_NAME.test(name);
}
