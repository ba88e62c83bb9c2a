// The conversation as shown: one view per message, in the conversation's current branch.
// Views are kept and updated in place (ids, versions, metrics) so that nothing already
// on screen is rebuilt when the server's copy of the conversation is read again.

import { icon, iconButton } from "./icons.js";
import { StreamingMarkdown } from "./markdown.js";
import { finalMetrics, liveMetrics, storedRate } from "./metrics.js";

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

class MessageView {
  constructor(transcript, role) {
    this.transcript = transcript;
    this.role = role;
    this.id = null;
    this.message = null;
    this.el = el("article", `msg ${role}`);
    this.heading = el("h3", "sr-only", role === "user" ? "You said:" : "The assistant said:");
    this.body = el("div", "msg-body");
    this.foot = el("div", "msg-foot");
    this.versionsBox = el("span", "versions");
    this.versionsBox.hidden = true;
    this.actions = el("span", "actions");
    this.foot.append(this.versionsBox, this.actions);
    this.el.append(this.heading, this.body, this.foot);
  }

  /** Versions of this message (siblings in the tree): "‹ 2 / 3 ›". */
  setVersions(versions) {
    const box = this.versionsBox;
    box.replaceChildren();
    if (!versions || versions.count < 2) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    const prev = iconButton("prev", "Previous version", "version-prev");
    const next = iconButton("next", "Next version", "version-next");
    prev.disabled = versions.index === 0;
    next.disabled = versions.index >= versions.count - 1;
    const label = el("span", "version-label", `${versions.index + 1} / ${versions.count}`);
    label.setAttribute("aria-label", `Version ${versions.index + 1} of ${versions.count}`);
    prev.addEventListener("click", () => this.transcript.hooks.version(this, -1));
    next.addEventListener("click", () => this.transcript.hooks.version(this, 1));
    box.append(prev, label, next);
  }

  setMessage(message) {
    this.message = message;
    this.id = message.id;
    this.el.dataset.id = message.id;
    this.setVersions(message.versions);
  }
}

export class QuestionView extends MessageView {
  constructor(transcript, text) {
    super(transcript, "user");
    this.text = text;
    this.body.classList.add("bubble");
    this.body.textContent = text;
    const edit = iconButton("edit", "Edit and resend", "edit");
    edit.addEventListener("click", () => this.startEdit());
    const copy = iconButton("copy", "Copy message", "copy");
    copy.addEventListener("click", () => this.transcript.hooks.copy(this.text, copy));
    this.actions.append(copy, edit);
  }

  setMessage(message) {
    super.setMessage(message);
    if (message.content !== this.text) {
      this.text = message.content;
      this.body.textContent = message.content;
    }
  }

  startEdit() {
    if (this.editing || !this.id) return;
    this.editing = true;
    const form = el("form", "edit-form");
    const area = el("textarea", "edit-input");
    area.value = this.text;
    area.rows = Math.min(12, this.text.split("\n").length + 1);
    area.setAttribute("aria-label", "Edit your message");
    const send = el("button", "primary", "Send");
    send.type = "submit";
    const cancel = el("button", "", "Cancel");
    cancel.type = "button";
    const buttons = el("div", "edit-buttons");
    buttons.append(cancel, send);
    form.append(area, buttons);
    const stop = () => {
      this.editing = false;
      form.replaceWith(this.body);
      this.foot.hidden = false;
    };
    cancel.addEventListener("click", () => {
      stop();
      this.actions.querySelector(".edit")?.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const content = area.value.trim();
      if (!content) return;
      stop();
      this.transcript.hooks.edit(this, content);
    });
    area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        cancel.click();
      } else if (event.key === "Enter" && !event.shiftKey && !event.isComposing &&
          event.keyCode !== 229) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    this.body.replaceWith(form);
    this.foot.hidden = true;
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }
}

export class AnswerView extends MessageView {
  constructor(transcript) {
    super(transcript, "assistant");
    this.text = "";
    this.body.classList.add("md");
    this.markdown = new StreamingMarkdown(this.body);
    this.status = el("div", "msg-status");
    this.status.hidden = true;
    this.metrics = el("span", "metrics");
    this.badge = el("span", "badge");
    this.badge.hidden = true;
    this.extra = el("div", "msg-extra");
    this.extra.hidden = true;
    this.el.insertBefore(this.status, this.foot);
    this.el.insertBefore(this.extra, this.status);
    this.foot.insertBefore(this.badge, this.actions);
    this.foot.insertBefore(this.metrics, this.badge);
    this.copyButton = iconButton("copy", "Copy answer", "copy");
    this.copyButton.addEventListener("click", () =>
      this.transcript.hooks.copy(this.text, this.copyButton));
    this.regenerateButton = iconButton("regenerate", "Regenerate answer", "regenerate");
    this.regenerateButton.addEventListener("click", () => this.transcript.hooks.regenerate(this));
    this.actions.append(this.copyButton, this.regenerateButton);
    this.body.addEventListener("click", (event) => {
      const button = event.target.closest(".copy-code");
      if (!button) return;
      const code = button.closest(".code-block").querySelector("code");
      this.transcript.hooks.copy(code.textContent, button);
    });
    this.setBusy(false);
  }

  setBusy(busy) {
    this.busy = busy;
    this.el.classList.toggle("busy", busy);
    this.el.setAttribute("aria-busy", busy ? "true" : "false");
    this.actions.hidden = busy;
  }

  identify(id, model) {
    this.id = id;
    if (id) this.el.dataset.id = id;
    if (model) this.el.dataset.model = model;
  }

  showStatus(kind, text, retry) {
    const box = this.status;
    box.replaceChildren();
    box.className = `msg-status ${kind}`;
    if (!kind) {
      box.hidden = true;
      return;
    }
    box.hidden = false;
    if (kind === "thinking") {
      box.append(el("span", "thinking-text", text), el("span", "dots"));
      return;
    }
    if (kind === "error") box.appendChild(icon("alert"));
    box.appendChild(el("span", "status-text", text));
    if (retry) {
      const button = el("button", "retry", "Retry");
      button.type = "button";
      button.addEventListener("click", () => this.transcript.hooks.retry(this));
      box.appendChild(button);
    }
  }

  setBadge(kind, text) {
    this.badge.hidden = !kind;
    this.badge.className = `badge ${kind || ""}`;
    this.badge.textContent = text || "";
    this.el.classList.toggle("stopped", kind === "stopped");
  }

  setMetrics(rows, live) {
    this.metrics.replaceChildren();
    this.metrics.classList.toggle("live", live);
    for (const [key, label, value, title] of rows) {
      const item = el("span", "metric");
      item.dataset.metric = key;
      item.title = title;
      item.append(el("span", "metric-label", label), " ", el("span", "metric-value", value));
      this.metrics.appendChild(item);
    }
  }

  // --- what a Turn calls ---

  thinking() {
    this.setBusy(true);
    this.setBadge(null);
    this.showStatus("thinking", "Thinking");
    this.setMetrics([], true);
  }

  /** False when the text is not all drawn yet (drawn over the next frames). */
  /** The stream cannot be followed any more: the stored message will be shown instead. */
  abandon() {
    this.setBusy(false);
    this.setBadge(null);
    this.showStatus(null);
  }

  /** Picking up an answer still being generated, from the text saved so far. */
  resuming(text) {
    this.setBusy(true);
    this.setBadge(null);
    this.showStatus(null);
    this.setMetrics([], true);
    this.render(text);
  }

  render(text) {
    this.text = text;
    if (text && this.status.classList.contains("thinking")) this.showStatus(null);
    return this.markdown.update(text);
  }

  live(figures) {
    this.setMetrics(liveMetrics(figures), true);
  }

  stopping() {
    if (this.busy) this.setBadge("stopping", "Stopping…");
  }

  reconnecting(on) {
    if (!this.busy) return;
    if (on) this.setBadge("reconnecting", "Reconnecting…");
    else if (this.badge.classList.contains("reconnecting")) this.setBadge(null);
  }

  toolCall(frame) {
    this.extra.hidden = false;
    let item = this.extra.querySelector(`[data-call="${CSS.escape(String(frame.index))}"]`);
    if (!item) {
      item = el("div", "tool-call");
      item.dataset.call = String(frame.index);
      item.append(el("span", "tool-name", `Tool call: ${frame.name || "?"}`), el("code", "tool-args"));
      this.extra.appendChild(item);
    }
    item.querySelector(".tool-args").textContent += frame.arguments || "";
  }

  note(text) {
    this.extra.hidden = false;
    this.extra.appendChild(el("div", "note", text));
  }

  finish({ text, reason, ttftMs, tokensPerSecond, usage }) {
    this.text = text;
    this.markdown.finish(text);
    this.setBusy(false);
    this.showStatus(null);
    this.setMetrics(finalMetrics({ ttftMs, tokensPerSecond, usage }), false);
    this.setOutcome(reason, text);
  }

  setOutcome(reason, text) {
    if (reason === "incomplete") {
      this.setBadge("stopped", "Stopped");
      if (!text) this.showStatus("note", "Stopped before the answer began.");
    } else if (reason === "length") {
      this.setBadge("length", "Cut off at the token limit");
    } else if (reason === "content_filter") {
      this.setBadge("length", "Stopped by the content filter");
    } else {
      this.setBadge(null);
    }
  }

  fail(error, text) {
    this.text = text || "";
    this.markdown.finish(this.text);
    this.setBusy(false);
    this.setBadge("failed", "Failed");
    const detail = error.status ? ` (HTTP ${error.status})` : "";
    this.showStatus("error", `${error.message || "The answer failed."}${detail}`, true);
    if (!this.metrics.childElementCount || this.metrics.classList.contains("live")) {
      this.setMetrics([], false);
    }
  }

  /** A message read from the server (history, or the end of a turn). */
  setMessage(message) {
    super.setMessage(message);
    this.identify(message.id, message.model);
    if (message.status === "streaming") return; // a Turn is (or will be) drawing it
    if (this.busy) return;
    if (message.content !== this.text || !this.markdown.finished) {
      this.text = message.content;
      this.markdown.finish(message.content);
    }
    this.setMetrics(finalMetrics({
      ttftMs: message.ttft_ms,
      tokensPerSecond: storedRate(message),
      usage: message.usage,
    }), false);
    if (message.status === "failed") {
      this.setBadge("failed", "Failed");
      this.showStatus("error", message.error || "The answer failed.", true);
    } else {
      this.showStatus(null);
      this.setOutcome(message.finish_reason || (message.status === "incomplete" ? "incomplete" : null), message.content);
    }
  }
}

export class Transcript {
  /** hooks: version(view, delta), edit(view, text), regenerate(view), retry(view), copy(text, button) */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.views = [];
  }

  clear() {
    this.views = [];
    this.root.replaceChildren();
    this.update();
  }

  add(view) {
    this.views.push(view);
    this.root.appendChild(view.el);
    this.update();
    return view;
  }

  question(text) {
    return this.add(new QuestionView(this, text));
  }

  answer() {
    return this.add(new AnswerView(this));
  }

  /** Drop the views from `index` on. */
  truncate(index) {
    for (const view of this.views.splice(index)) view.el.remove();
    this.update();
  }

  /**
   * Show `messages` (the conversation's branch), keeping every view that still matches
   * (same id, or a view still waiting for its id) and rebuilding from the first that
   * does not.
   */
  sync(messages) {
    let index = 0;
    for (; index < messages.length && index < this.views.length; index++) {
      const view = this.views[index];
      const message = messages[index];
      // A view made here before the server named its message matches by its text.
      const same = view.role === message.role &&
        (view.id ? view.id === message.id : view.busy || view.text === message.content);
      if (!same) break;
      view.setMessage(message);
    }
    if (index < this.views.length) this.truncate(index);
    for (; index < messages.length; index++) {
      const message = messages[index];
      const view = message.role === "user"
        ? new QuestionView(this, message.content)
        : new AnswerView(this);
      this.add(view);
      view.setMessage(message);
    }
    this.update();
  }

  last(role) {
    for (let i = this.views.length - 1; i >= 0; i--) {
      if (!role || this.views[i].role === role) return this.views[i];
    }
    return null;
  }

  /** Only the last answer offers regenerate; a question left without one offers it. */
  update() {
    const lastAnswer = this.last("assistant");
    for (const view of this.views) {
      if (view.regenerateButton) view.regenerateButton.hidden = view !== lastAnswer;
    }
    this.root.classList.toggle("empty", this.views.length === 0);
    const last = this.views[this.views.length - 1];
    const unanswered = last?.role === "user" && !last.editing && Boolean(last.id);
    if (unanswered && !this.unanswered) {
      this.unanswered = el("div", "unanswered");
      this.unanswered.append(el("span", "", "This version of the question has no answer shown here."));
      const button = el("button", "", "Answer it");
      button.type = "button";
      button.addEventListener("click", () => this.hooks.regenerate(null));
      this.unanswered.appendChild(button);
    }
    if (unanswered) this.root.appendChild(this.unanswered);
    else this.unanswered?.remove();
  }
}
