// Gateway URLs: the WebSocket endpoint and the SSE endpoint derived from it (PROTOCOL.md section 10).

// `url` made absolute against the page (when there is one).
export function absolute(url) {
  const u = String(url);
  return typeof location !== "undefined" && location.href ? new URL(u, location.href).href : u;
}

export function toWebSocketUrl(url) {
  return absolute(url).replace(/^http(s?):/i, "ws$1:");
}

/** `url` (absolute or relative to the page) with a ws(s): scheme turned into http(s):. */
export function toHttpUrl(url) {
  return absolute(url).replace(/^ws(s?):/i, "http$1:");
}

/**
 * The SSE endpoint of a gateway (section 10.1) from its WebSocket URL: ws(s)://host/path/ws ->
 * http(s)://host/path/sse; a path not ending in /ws gets /sse appended. An explicit `sseUrl` option
 * (absolute or relative to the page) replaces this.
 */
export function toSseUrl(wsUrl) {
  const u = new URL(toHttpUrl(wsUrl));
  u.pathname = u.pathname.endsWith("/ws") ? u.pathname.slice(0, -2) + "sse" : u.pathname.replace(/\/?$/, "/sse");
  u.hash = "";
  return u.href;
}
