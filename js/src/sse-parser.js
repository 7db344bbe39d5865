// A text/event-stream reader (the WHATWG "event stream interpretation", what EventSource does): text goes
// in as it arrives, in chunks cut anywhere; each complete message comes out as {event, data, id}.
// Lines end with \r\n, \n or \r; a blank line ends a message; `data` lines join with \n; lines starting
// with ":" are comments; `retry` and unknown fields are ignored (the client never lets a stream reconnect
// by itself). A message without data is not dispatched, as in EventSource. A message (its lines so far)
// longer than `maxChars` makes push() throw a RangeError: a broken or hostile stream cannot fill memory.

// Far above any frame a gateway sends (its events carry at most NATS's max_payload, 1 MiB by default).
export const MAX_MESSAGE_CHARS = 16 * 1024 * 1024;

export class SseParser {
  /** onMessage({event, data, id}): event is "message" when the message names none. */
  constructor(onMessage, maxChars = MAX_MESSAGE_CHARS) {
    this._onMessage = onMessage;
    this._maxChars = maxChars;
    this._size = 0; // characters of the current message's lines so far
    this._buffer = "";
    this._start = true; // a byte order mark may open the stream
    this._afterCr = false; // the last chunk ended in \r: a \n opening the next one belongs to it
    this._event = "";
    this._data = [];
    this._id = "";
  }

  /** Feed decoded text. */
  push(text) {
    if (this._start && text.length > 0) {
      this._start = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this._afterCr && text.startsWith("\n")) text = text.slice(1);
    this._afterCr = false;
    let buffer = this._buffer + text;
    for (;;) {
      const end = buffer.search(/[\r\n]/);
      if (end < 0) break;
      if (buffer[end] === "\r" && end === buffer.length - 1) {
        // maybe the first half of \r\n: take the line, drop a \n that opens the next chunk
        this._afterCr = true;
        this._line(buffer.slice(0, end));
        buffer = "";
        break;
      }
      this._line(buffer.slice(0, end));
      buffer = buffer.slice(end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1));
    }
    this._buffer = buffer;
    if (this._size + buffer.length > this._maxChars) throw new RangeError(`an SSE message over ${this._maxChars} characters`);
  }

  _line(line) {
    if (line === "") return this._dispatch();
    if (line.startsWith(":")) return;
    this._size += line.length + 1;
    if (this._size > this._maxChars) throw new RangeError(`an SSE message over ${this._maxChars} characters`);
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this._event = value;
    else if (field === "data") this._data.push(value);
    else if (field === "id" && !value.includes("\0")) this._id = value;
  }

  _dispatch() {
    const data = this._data;
    const event = this._event || "message";
    this._data = [];
    this._event = "";
    this._size = 0;
    if (data.length === 0) return;
    this._onMessage({ event, data: data.join("\n"), id: this._id });
  }
}
