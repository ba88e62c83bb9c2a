// An incremental Server-Sent Events parser: feed(text) -> events, no I/O.
// Rules from https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation

export class SSEParser {
  constructor() {
    this.buffer = "";
    this.pendingCR = false;
    this.reset();
    this.lastEventId = "";
  }

  reset() {
    this.data = [];
    this.event = "";
    this.hasData = false;
  }

  /** Parse a decoded piece of the stream; returns the events it completed. */
  feed(text) {
    const events = [];
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1); // CRLF split across reads
    this.pendingCR = false;
    const buffer = this.buffer + text;
    let start = 0;
    // Where the next CR is, found once and reused: searching again from every line
    // start would rescan the whole buffer per line when it has none (the usual case).
    let cr = buffer.indexOf("\r");
    for (;;) {
      const lf = buffer.indexOf("\n", start);
      if (cr !== -1 && cr < start) cr = buffer.indexOf("\r", start);
      let end;
      let next;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        end = cr;
        if (cr + 1 === buffer.length) {
          this.pendingCR = true;
          next = cr + 1;
        } else {
          next = buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
        }
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        break;
      }
      this.line(buffer.slice(start, end), events);
      start = next;
    }
    this.buffer = buffer.slice(start);
    return events;
  }

  /** The stream ended: an event without its blank line is discarded, as the spec says. */
  close() {
    this.buffer = "";
    this.reset();
  }

  line(line, events) {
    if (line === "") {
      if (this.hasData) {
        events.push({
          event: this.event || "message",
          data: this.data.join("\n"),
          id: this.lastEventId,
        });
      }
      this.reset();
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment, e.g. the ": ping" keep-alive
    const colon = line.indexOf(":");
    let field = line;
    let value = "";
    if (colon !== -1) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "event") {
      this.event = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastEventId = value;
    }
    // "retry" and unknown fields: nothing this client uses.
  }
}
