// What a page gives the client: the configuration a Django page renders (<script id="telegraphy-config">)
// and the token endpoint it posts to with its session cookie and CSRF token.

/** The options in <script id="telegraphy-config" type="application/json">; throws when there is none. */
export function pageConfig() {
  const el = typeof document !== "undefined" && document.getElementById("telegraphy-config");
  if (!el) throw new Error('Telegraphy.fromPage: no <script id="telegraphy-config"> on the page');
  return JSON.parse(el.textContent);
}

/** The value of cookie `name` in this document ("" when absent or without a document). */
function readCookie(name) {
  if (typeof document === "undefined" || typeof document.cookie !== "string") return "";
  for (const part of document.cookie.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim());
  }
  return "";
}

/**
 * getToken for a `tokenUrl`: POST with same-origin credentials and the CSRF token in X-CSRFToken (the
 * `csrfToken` option, which the Django page config carries, else the `csrftoken` cookie). 401/403: no token
 * (the client stops, unauthorized). 429: an error with `retryAfterMs` (Retry-After), the next attempt waits
 * at least that long. Other failures: an error, retried with backoff.
 */
export function fetchToken(tokenUrl, csrfToken) {
  return async () => {
    const headers = { Accept: "application/json" };
    const csrf = csrfToken || readCookie("csrftoken");
    if (csrf) headers["X-CSRFToken"] = csrf;
    const res = await fetch(tokenUrl, { method: "POST", credentials: "same-origin", headers });
    if (res.status === 401 || res.status === 403) return null;
    if (res.status === 429) {
      const seconds = Number(res.headers.get("Retry-After"));
      const err = new Error("token endpoint answered HTTP 429 (rate limited)");
      err.retryAfterMs = Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
      throw err;
    }
    if (!res.ok) throw new Error(`token endpoint answered HTTP ${res.status}`);
    return (await res.json()).token || null;
  };
}
