// Server-sent events, parsed the way the WHATWG spec tells EventSource to: lines end with \r\n, \r or
// \n (a pair may be split across chunks), "data:" lines accumulate and join with \n, "event:" names the
// event (default "message"), "id:" sets the last event id (it persists across events), lines starting
// with ":" are comments (heartbeats), and a blank line dispatches. A trailing incomplete event is dropped.
// The page cannot use EventSource itself: it must send an Authorization header.

/** Incremental parser: push() decoded text in any chunking; onEvent gets {id, event, data}. */
export class SSEParser {
  constructor(onEvent) {
    Object.assign(this, { onEvent, buf: "", data: [], event: "" });
    this.lastId = null; // persists across events, as EventSource's lastEventId does
  }
  push(text) {
    this.buf += text;
    const re = /\r\n|\r|\n/g;
    let start = 0, m;
    while ((m = re.exec(this.buf)) !== null) {
      // A lone \r at the very end may be the first half of a \r\n split across chunks: wait.
      if (m[0] === "\r" && m.index === this.buf.length - 1) break;
      this.line(this.buf.slice(start, m.index));
      start = re.lastIndex;
    }
    this.buf = this.buf.slice(start);
  }
  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return; // comment (heartbeat)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.lastId = value;
    // "retry" and unknown fields are ignored: reconnection timing is ours.
  }
  dispatch() {
    if (this.data.length) {
      this.onEvent({ id: this.lastId, event: this.event || "message", data: this.data.join("\n") });
    }
    this.data = [];
    this.event = "";
  }
}
