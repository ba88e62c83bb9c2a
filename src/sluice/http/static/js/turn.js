// One answer being received: send the turn (or resume a stream by id), read its events,
// render at most once per animation frame, survive lost connections by resuming after
// the last event id seen, and stop it on request (the server cancels the generation).

import { ApiError, NetworkError, api, readEvents } from "./api.js";
import { t } from "./i18n.js";

const STALL_MS = 45000; // no bytes, not even a keep-alive ping: assume the connection died
const SLICE_MS = 10;
// A resumed stream first replays what was generated before it was joined, all at once,
// and the live rate must not count that backlog. It is over once a read has to wait for
// the network (the page caught up with the model), or at the latest after BACKLOG_MS.
const CAUGHT_UP_WAIT_MS = 4;
const BACKLOG_MS = 1000;

function nextTask() {
  if (globalThis.scheduler?.yield) return globalThis.scheduler.yield();
  return new Promise((resolve) => setTimeout(resolve, 0));
}

export class Turn {
  /**
   * view: the AnswerView to draw into. connection: the Connection monitor.
   * hooks: {start(frame), end(turn), frame()} — called on the start event, at the end,
   * and after each render.
   */
  constructor(view, connection, hooks = {}) {
    this.view = view;
    this.connection = connection;
    this.hooks = hooks;
    this.state = "idle"; // thinking, streaming, done, stopped, failed, detached
    this.text = "";
    this.known = "";
    this.after = 0;
    this.streamId = null;
    this.conversationId = null;
    this.messageId = null;
    this.chunks = 0;
    // The live rate counts only what arrived as it was generated (see BACKLOG_MS).
    this.resumed = false;
    this.caughtUp = false;
    this.openedAt = 0;
    this.liveFrom = 0;
    this.liveChunks = 0;
    this.usage = null;
    this.sentAt = 0;
    this.firstAt = 0;
    this.frameRequest = 0;
    this.controller = null;
    this.stopRequested = false;
    this.ended = false;
    this.detached = false;
    this.onOffline = () => this.controller?.abort();
    window.addEventListener("offline", this.onOffline);
  }

  /** POST /chat with `body`; `prefix` is the text a continue turn extends (kept shown). */
  async send(body, prefix = "") {
    this.body = body;
    this.sentAt = performance.now();
    this.setState("thinking");
    this.view.thinking();
    if (prefix) {
      this.text = prefix;
      this.known = prefix;
      this.view.render(prefix);
    }
    let response;
    try {
      this.controller = new AbortController();
      response = await api.chat(body, this.controller.signal);
    } catch (error) {
      if (this.detached) return;
      if (error instanceof NetworkError || error.name === "AbortError") {
        this.connection.lost();
        this.fail({ message: t("answer.unreachable"), retryable: true, resend: true });
      } else {
        this.fail({
          message: error.message,
          code: error.code,
          status: error.status,
          retryable: error.status === 429 || error.status === 408 || error.status >= 500,
          retryAt: error.retryAfter ? Date.now() + error.retryAfter * 1000 : null,
          resend: true,
        });
      }
      return;
    }
    await this.follow(response);
  }

  /** Pick up a stream already running (after a reload); `known` is the text stored so far. */
  async resume(streamId, known = "") {
    this.streamId = streamId;
    this.known = known;
    this.after = 0;
    this.resumed = true;
    this.setState(known ? "streaming" : "thinking");
    if (known) this.view.resuming(known);
    else this.view.thinking();
    await this.follow(null);
  }

  async follow(response) {
    for (;;) {
      if (response) {
        try {
          await this.consume(response);
        } catch (error) {
          if (this.detached) return;
          if (!(error instanceof NetworkError) && error.name !== "AbortError") throw error;
          this.view.reconnecting(true);
          await this.connection.lost();
        }
      }
      if (this.ended || this.detached) return;
      // The response ended without done or error: the connection broke. Resume.
      response = null;
      try {
        this.controller = new AbortController();
        response = await api.resume(this.streamId, this.after, this.controller.signal);
        this.view.reconnecting(false);
      } catch (error) {
        if (this.detached) return;
        if (error instanceof ApiError && error.status === 404) {
          // No longer kept by the server (restarted, or long over): the stored message
          // is all there is; the page reads it again.
          this.view.abandon();
          this.end("gone");
          return;
        }
        if (error instanceof ApiError && error.status < 500) {
          this.fail({ message: error.message, code: error.code, retryable: true });
          return;
        }
        this.view.reconnecting(true);
        if (error instanceof ApiError) {
          await new Promise((resolve) => setTimeout(resolve, 1000)); // up, but busy (5xx)
        } else {
          await this.connection.lost();
        }
      }
    }
  }

  async consume(response) {
    this.openedAt = performance.now();
    const events = readEvents(response);
    let timer = 0;
    const watchdog = () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.controller?.abort(), STALL_MS);
    };
    watchdog();
    let slice = performance.now();
    let readAt = slice;
    try {
      for await (const batch of events) {
        watchdog();
        // Data already received is read at once; a wait means this is what arrives now.
        if (this.chunks && performance.now() - readAt > CAUGHT_UP_WAIT_MS) this.caughtUp = true;
        for (const frame of batch) this.handle(frame);
        if (this.ended || this.detached) break;
        // Reads of data already received resolve at once (microtasks): a big replay would
        // never let the page paint. Give the browser a turn every few milliseconds.
        if (performance.now() - slice > SLICE_MS) {
          await nextTask();
          slice = performance.now();
        }
        readAt = performance.now();
      }
    } finally {
      clearTimeout(timer);
    }
  }

  handle(frame) {
    if (this.ended) return;
    if (frame.seq !== null && frame.type !== "start" && frame.type !== "done") {
      if (frame.seq <= this.after) return; // already had it (a replay overlap)
      this.after = frame.seq;
    }
    switch (frame.type) {
      case "start":
        if (!this.streamId || !this.messageId) {
          this.streamId = frame.stream_id;
          this.conversationId = frame.conversation_id;
          this.messageId = frame.message_id;
          this.view.identify(frame.message_id, frame.model);
          this.hooks.start?.(frame);
          if (this.stopRequested) this.cancel();
        }
        break;
      case "content":
        if (!this.firstAt) {
          this.firstAt = performance.now();
          this.setState("streaming");
        }
        this.text += frame.content;
        this.chunks += 1;
        this.countLive();
        this.schedule();
        break;
      case "usage":
        this.usage = frame;
        this.schedule();
        break;
      case "tool_call":
        this.view.toolCall(frame);
        break;
      case "failover":
        this.view.note(t("answer.failover", { from: frame.from, to: frame.to }));
        break;
      case "error":
        this.flush();
        this.fail({
          message: frame.message,
          code: frame.code,
          type: frame.error_type,
          retryable: frame.retryable,
        });
        break;
      case "done": {
        const text = typeof frame.content === "string" && frame.content.length >= this.text.length
          ? frame.content : this.text;
        this.text = text;
        this.known = "";
        this.cancelFrame();
        const stopped = frame.finish_reason === "incomplete";
        this.view.finish({
          text,
          reason: frame.finish_reason,
          ttftMs: frame.ttft_ms,
          tokensPerSecond: frame.tokens_per_second,
          usage: this.usage,
        });
        this.end(stopped ? "stopped" : "done");
        break;
      }
      default:
        break;
    }
  }

  /** One more chunk for the live rate, unless it is a resumed stream's replayed backlog. */
  countLive() {
    const now = performance.now();
    if (this.liveFrom) {
      this.liveChunks += 1;
    } else if (!this.resumed || this.caughtUp || now - this.openedAt > BACKLOG_MS) {
      this.liveFrom = now; // like the first token: the clock starts here, it is not counted
    }
  }

  schedule() {
    if (!this.frameRequest) this.frameRequest = requestAnimationFrame(() => this.flush());
  }

  cancelFrame() {
    if (this.frameRequest) cancelAnimationFrame(this.frameRequest);
    this.frameRequest = 0;
  }

  /** Draw what arrived since the last frame (one DOM update per frame, at most). */
  flush() {
    this.cancelFrame();
    const shown = this.text.length >= this.known.length ? this.text : this.known;
    if (!this.view.render(shown)) this.schedule();
    const now = performance.now();
    const live = this.liveFrom ? (now - this.liveFrom) / 1000 : 0;
    this.view.live({
      // A page that joined mid-answer never saw it start: the gateway's figure comes at the end.
      ttftMs: this.resumed ? undefined : this.sentAt && this.firstAt ? this.firstAt - this.sentAt : null,
      chunks: this.chunks,
      rate: live > 0.25 && this.liveChunks > 0 ? this.liveChunks / live : null,
      usage: this.usage,
    });
    this.hooks.frame?.();
  }

  /** Stop generating: the server cancels the upstream call and keeps the partial answer. */
  stop() {
    if (this.ended || this.stopRequested) return;
    this.stopRequested = true;
    this.view.stopping();
    if (this.streamId) this.cancel();
  }

  async cancel() {
    for (;;) {
      try {
        await api.cancel(this.streamId);
        return;
      } catch (error) {
        if (!(error instanceof NetworkError) || this.ended) return;
        await this.connection.lost();
      }
    }
  }

  fail(error) {
    this.error = error;
    this.cancelFrame();
    this.view.fail(error, this.text);
    this.end("failed");
  }

  end(state) {
    this.ended = true;
    this.setState(state);
    window.removeEventListener("offline", this.onOffline);
    this.hooks.end?.(this);
  }

  /** Stop reading (the page shows something else); the server keeps generating. */
  detach() {
    if (this.ended) return;
    this.detached = true;
    this.ended = true;
    this.cancelFrame();
    this.controller?.abort();
    window.removeEventListener("offline", this.onOffline);
    this.state = "detached";
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.hooks.state?.(state, this);
  }
}
