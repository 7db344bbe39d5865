// telegraphy-client: the browser client of Telegraphy protocol v1 (proto/PROTOCOL.md). The package's entry;
// build.mjs bundles it into dist/telegraphy.mjs (this API) and dist/telegraphy.global.js (global.js).
export { validateName, validatePattern, matches, contains, encodeKey, decodeKey, validateSubName } from "./names.js";
export { checkConditions } from "./filters.js";
export { backoffDelay } from "./backoff.js";
export { TelegraphyError } from "./errors.js";
export { RpcError } from "./actions.js";
export { Subscription } from "./subscription.js";
export { Telegraphy } from "./client.js";
