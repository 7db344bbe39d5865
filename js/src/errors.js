// The one error class the client reports (tg.on("error"), a subscription's onError, rejected promises).

export class TelegraphyError extends Error {
  constructor(code, message, details = {}) {
    super(message, details.cause ? { cause: details.cause } : undefined);
    this.name = "TelegraphyError";
    this.code = code;
    for (const k of ["id", "event", "closeCode"]) if (details[k] !== undefined) this[k] = details[k];
  }
}
