// Recovery: what follows a lost connection (PROTOCOL.md section 3, the same on every transport).
import { PROTOCOL } from "./constants.js";
import { backoffDelay } from "./backoff.js";
import { TelegraphyError } from "./errors.js";
import { fetchToken } from "./page.js";

// Close code -> {name, client}: what the client does after it (constants.json close_codes); a code not
// listed there is a lost link: reconnect with backoff.
const CLOSES = new Map(Object.entries(PROTOCOL.close_codes).map(([name, { code, client }]) => [code, { name, client }]));
const LOST = { name: "lost", client: "reconnect" };
// The error a stopping close reports: its code (the close's name, but 4003 has always been "revoked") and text.
const STOP_ERRORS = { forbidden: ["revoked", "access forbidden or revoked"] };
const MAX_AUTH_FAILURES = 3;
const RESUME_MARGIN_MS = 5000;

/**
 * Decides, the client acts. It holds the credentials (resume token from the last `connected`, the
 * unused connect token, getToken), the close-code rules, the reconnect backoff and the transport for
 * the next attempt. lost() and retry() answer a plan: {delay, sameUrl?} (reconnect after delay ms;
 * sameUrl: to the same gateway, with another transport) or {stop: state, error?}.
 *
 * Transports are tried in the order given: while none has worked yet, one that closes before it opened
 * gives way to the next at once (after the last one: backoff, then the first again). Once one opened,
 * the client keeps it for every reconnect: a gateway restart must not move a WebSocket client to SSE.
 */
export class Recovery {
  constructor(options, transports, random, now) {
    this.transports = transports;
    this._index = 0;
    this._proven = false; // a transport opened: it stays
    this._random = random;
    this._now = now;
    this._minDelay = options.minDelay ?? 500;
    this._maxDelay = options.maxDelay ?? 20000;
    this._token = options.token || null;
    this._getToken = options.getToken || (options.tokenUrl ? fetchToken(options.tokenUrl, options.csrfToken) : null);
    // No `token` option at all: anonymous. `token: null` or "": the page could not get one (e.g. the
    // server could not mint it) and there is nothing to connect with.
    this._anonymous = options.token === undefined && !this._getToken;
    this.noToken = !this._token && !this._getToken && !this._anonymous;
    this.attempt = 0;
    this._limited = 0; // consecutive 4029 closes
    this._authFailures = 0;
    this._refetchedAfterRevoke = false;
    this._resume = null;
    this._resumeExpiresAt = 0;
    this._sent = null; // the credential sent on the current connection
  }

  /** The transport for the next connection. */
  get transport() {
    return this.transports[this._index];
  }

  /** connect() was called. */
  start() {
    this.attempt = 0;
    this._authFailures = 0;
  }

  /** A resume token is held (and not about to expire). */
  get resumable() {
    return Boolean(this._resume) && this._now() < this._resumeExpiresAt - RESUME_MARGIN_MS;
  }

  // The credential for the next connect: resume > unused connect token > getToken > anonymous; null
  // when there is none (possibly as a promise). `resume` false: the transport must not carry a resume
  // token (it would go in a URL), so a connect token (or anonymous) it is, and the resume is dropped.
  credential(resume = true) {
    if (resume && this.resumable) return { resume: this._resume };
    this._resume = null;
    if (this._token) return { token: this._token };
    if (this._getToken) {
      return Promise.resolve(this._getToken()).then((token) => {
        if (!token) return null;
        this._token = token;
        return { token };
      });
    }
    return this._anonymous ? {} : null;
  }

  /** `cred` goes out in the connect frame of a new connection. */
  sending(cred) {
    this._sent = cred;
  }

  /** The transport opened: it works on this network. */
  opened() {
    this._proven = true;
  }

  /** The gateway accepted the connect. */
  connected(frame) {
    if (typeof frame.resume === "string") {
      this._resume = frame.resume;
      this._resumeExpiresAt = this._now() + (Number(frame.resume_expires_in) || 0) * 1000;
    }
    this._token = null; // connect tokens are single use
    this._refetchedAfterRevoke = false;
    this.attempt = 0;
    this._authFailures = 0;
  }

  /** The connection ended with close `code`; `opened`: its transport had opened. */
  lost(code, opened) {
    if (!opened && !this._proven && this.transports.length > 1) {
      this._index = (this._index + 1) % this.transports.length;
      if (this._index !== 0) return { ...this._next(true), sameUrl: true }; // not tried yet: at once, same gateway
    }
    const rule = CLOSES.get(code) ?? LOST;
    if (rule.client === "new_token") return this._unauthorized();
    // Revoked with a way to get tokens: the backend decides (below); else it stops.
    if (rule.name === "forbidden" && this._getToken && !this._refetchedAfterRevoke) return this._revoked();
    if (rule.client === "stop") {
      const [errorCode, text] = STOP_ERRORS[rule.name] ?? [rule.name, rule.name.replace(/_/g, " ")];
      return { stop: "disconnected", error: new TelegraphyError(errorCode, `the gateway closed the connection: ${text} (${code})`, { closeCode: code }) };
    }
    // rate_limited (4029, over a quota): retry later, waiting longer after each consecutive one, though
    // `connected` in between resets the ordinary backoff.
    this._limited = rule.name === "rate_limited" ? this._limited + 1 : 0;
    const notBefore = this._limited ? Math.min(this._maxDelay, this._minDelay * 2 ** Math.min(this._limited, 16)) : 0;
    return this._next(rule.client === "reconnect_at_once" && this.attempt === 0, notBefore); // restart: at once, the first time
  }

  /** A step before the connection failed (getToken, the url function); notBefore: e.g. a Retry-After. */
  retry(notBefore) {
    return this._next(false, notBefore);
  }

  _unauthorized() {
    const sent = this._sent || {};
    if (sent.resume) this._resume = null;
    if (sent.token) {
      this._token = null;
      this._authFailures++;
    }
    const canRetry = this._resume || this._token || (this._getToken && this._authFailures < MAX_AUTH_FAILURES);
    if (!canRetry) return { stop: "unauthorized" };
    return this._next(Boolean(sent.resume)); // an expired resume: fetch a token at once
  }

  // Revoked (4003) with a way to get tokens: the backend decides whether this user still gets one (e.g. a
  // changed `allow`, or a logout on another device); 401/403 from it stops the client. Once per connection.
  _revoked() {
    this._resume = null;
    this._token = null;
    this._refetchedAfterRevoke = true;
    return this._next(true);
  }

  /** The reconnect delay for attempt number `attempt` (also used for retries of a subscribe). */
  backoff(attempt) {
    return backoffDelay(attempt, this._random, this._minDelay, this._maxDelay);
  }

  // notBefore (ms): a floor for the delay.
  _next(immediate, notBefore = 0) {
    const backoff = immediate ? 0 : this.backoff(this.attempt);
    this.attempt++;
    return { delay: Math.max(backoff, notBefore) };
  }
}
