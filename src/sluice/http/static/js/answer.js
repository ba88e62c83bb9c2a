// One answer as shown: drawn while it streams (markdown, live numbers, reconnecting),
// then finished with the gateway's figures and its outcome — stopped, interrupted, cut
// off, failed (with Retry, counting down to Retry-After) — and the model that wrote it.

import { t } from "./i18n.js";
import { icon, iconButton } from "./icons.js";
import { StreamingMarkdown } from "./markdown.js";
import { MessageView, el } from "./message.js";
import { budgetRow, finalMetrics, liveMetrics, storedRate } from "./metrics.js";

const CJK = /[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]/;
const KANA = /[\u3040-\u30ff]/;
const HANGUL = /[\uac00-\ud7af]/;
const HAN_ONLY = 40; // characters of Han text with no kana: Chinese, not Japanese

export class AnswerView extends MessageView {
  constructor(transcript) {
    super(transcript, "assistant");
    this.text = "";
    this.body.classList.add("md");
    this.markdown = new StreamingMarkdown(this.body);
    this.status = el("div", "msg-status");
    this.status.hidden = true;
    this.metrics = el("span", "metrics");
    this.modelName = el("span", "model-name");
    this.modelName.hidden = true;
    this.badge = el("span", "badge");
    this.badge.hidden = true;
    this.extra = el("div", "msg-extra");
    this.extra.hidden = true;
    this.el.insertBefore(this.status, this.foot);
    this.el.insertBefore(this.extra, this.status);
    this.foot.insertBefore(this.badge, this.actions);
    this.foot.insertBefore(this.metrics, this.badge);
    this.foot.insertBefore(this.modelName, this.metrics);
    this.copyButton = iconButton("copy", t("answer.copy"), "copy");
    this.copyButton.addEventListener("click", () =>
      this.transcript.hooks.copy(this.text, this.copyButton));
    this.regenerateButton = iconButton("regenerate", t("answer.regenerate"), "regenerate");
    this.regenerateButton.addEventListener("click", () => this.transcript.hooks.regenerate(this));
    // Carries on an answer that was stopped, interrupted or cut off, in place.
    this.continueButton = el("button", "continue", t("answer.continue"));
    this.continueButton.type = "button";
    this.continueButton.title = t("answer.continueTitle");
    this.continueButton.hidden = true;
    this.continueButton.addEventListener("click", () => this.transcript.hooks.continue(this));
    this.actions.append(this.continueButton, this.copyButton, this.regenerateButton);
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
    this.showModel();
  }

  /** Which model wrote it, and whether that is a simulated one. */
  showModel() {
    const model = this.el.dataset.model;
    this.modelName.hidden = !model;
    if (!model) return;
    const simulated = this.transcript.hooks.simulated?.(model);
    this.modelName.textContent = simulated ? t("answer.simulatedModel", { model }) : model;
    this.modelName.title = t(simulated ? "answer.simulatedTitle" : "answer.modelTitle");
    this.modelName.classList.toggle("simulated", Boolean(simulated));
  }

  showStatus(kind, text, retry) {
    const box = this.status;
    clearInterval(this.countdown);
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
      const button = el("button", "retry", t("answer.retry"));
      button.type = "button";
      button.addEventListener("click", () => this.transcript.hooks.retry(this));
      box.appendChild(button);
      if (typeof retry === "number") this.countDown(button, retry);
    }
    if (this.unsent) {
      const button = el("button", "edit-unsent", t("answer.edit"));
      button.type = "button";
      button.addEventListener("click", () => this.transcript.hooks.editUnsent(this));
      box.appendChild(button);
    }
  }

  /** Retry waits until `at` (epoch ms, from Retry-After), counting down. */
  countDown(button, at) {
    const tick = () => {
      const left = Math.ceil((at - Date.now()) / 1000);
      button.disabled = left > 0;
      button.textContent = left > 0 ? t("answer.retryIn", { seconds: left }) : t("answer.retry");
      if (left <= 0) clearInterval(this.countdown);
    };
    tick();
    if (button.disabled) this.countdown = setInterval(tick, 250);
  }

  setBadge(kind, text) {
    this.badge.hidden = !kind;
    this.badge.className = `badge ${kind || ""}`;
    this.badge.textContent = text || "";
    this.el.classList.toggle("stopped", kind === "stopped" || kind === "interrupted");
  }

  /** The price of the model that wrote it, when the gateway has one. */
  price() {
    return this.transcript.hooks.price?.(this.el.dataset.model) || null;
  }

  /** What the key's budget has left, under this (the latest) answer. */
  showBudget(budget) {
    this.metrics.querySelector('[data-metric="budget"]')?.remove();
    if (!budget || !this.metrics.childElementCount) return;
    this.appendMetric(budgetRow(budget));
  }

  setMetrics(rows, live) {
    this.metrics.replaceChildren();
    this.metrics.classList.toggle("live", live);
    for (const row of rows) this.appendMetric(row);
  }

  appendMetric([key, label, value, title]) {
    const item = el("span", "metric");
    item.dataset.metric = key;
    item.title = title;
    item.append(el("span", "metric-label", label), " ", el("span", "metric-value", value));
    this.metrics.appendChild(item);
  }

  // --- what a Turn calls ---

  thinking() {
    this.setBusy(true);
    this.continueButton.hidden = true;
    this.setBadge(null);
    this.showStatus("thinking", t("answer.thinking"));
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
    this.markScript(text);
    if (text && this.status.classList.contains("thinking")) this.showStatus(null);
    return this.markdown.update(text);
  }

  /**
   * Tag an answer in Chinese, Japanese or Korean with its language, so the page draws it
   * as such (its emphasis bold, not slanted: app.css). Kana is Japanese, Hangul Korean,
   * other Han Chinese; decided once. Japanese often opens with kanji alone ("焦らず…"
   * arrives as "焦"), so Han without kana is called Chinese only after a sentence's worth
   * of text (HAN_ONLY characters) or at the end (`final`).
   */
  markScript(text, final = false) {
    if (this.body.lang) return;
    // Only the text not looked at yet: a long answer is not scanned again every frame.
    const fresh = text.length >= (this.scanned || 0) ? text.slice(this.scanned || 0) : text;
    this.scanned = text.length;
    if (this.cjkFrom === undefined && !CJK.test(fresh)) return;
    this.cjkFrom ??= text.length - fresh.length + fresh.search(CJK);
    const since = text.slice(this.cjkFrom);
    if (KANA.test(since)) this.body.lang = "ja";
    else if (HANGUL.test(since)) this.body.lang = "ko";
    else if (final || since.length >= HAN_ONLY) this.body.lang = "zh";
  }

  live(figures) {
    this.setMetrics(liveMetrics(figures), true);
  }

  stopping() {
    if (this.busy) this.setBadge("stopping", t("answer.stopping"));
  }

  reconnecting(on) {
    if (!this.busy) return;
    if (on) this.setBadge("reconnecting", t("answer.reconnecting"));
    else if (this.badge.classList.contains("reconnecting")) this.setBadge(null);
  }

  toolCall(frame) {
    this.extra.hidden = false;
    let item = this.extra.querySelector(`[data-call="${CSS.escape(String(frame.index))}"]`);
    if (!item) {
      item = el("div", "tool-call");
      item.dataset.call = String(frame.index);
      item.append(el("span", "tool-name", t("answer.toolCall", { name: frame.name || "?" })), el("code", "tool-args"));
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
    this.markScript(text, true);
    this.markdown.finish(text);
    this.setBusy(false);
    this.showStatus(null);
    this.setMetrics(finalMetrics({ ttftMs, tokensPerSecond, usage, price: this.price() }), false);
    this.setOutcome(reason, text);
  }

  setOutcome(reason, text) {
    this.continueButton.hidden = !(text && ["interrupted", "incomplete", "length"].includes(reason));
    if (reason === "interrupted") {
      // Cut short by the server (a crash, a restart), not by the reader: offer it again.
      this.setBadge("interrupted", t("answer.interrupted"));
      this.showStatus("note", t(text ? "answer.interruptedText" : "answer.interruptedEmpty"), true);
    } else if (reason === "incomplete") {
      this.setBadge("stopped", t("answer.stopped"));
      if (!text) this.showStatus("note", t("answer.stoppedEmpty"));
    } else if (reason === "length") {
      this.setBadge("length", t("answer.length"));
    } else if (reason === "content_filter") {
      this.setBadge("length", t("answer.filtered"));
    } else {
      this.setBadge(null);
    }
  }

  fail(error, text) {
    this.text = text || "";
    this.continueButton.hidden = true;
    this.unsentTurn = Boolean(error.resend); // the request never got a stream
    this.markdown.finish(this.text);
    this.setBusy(false);
    // Nothing to copy or regenerate for a question never sent: its card has Retry, Edit.
    if (this.unsent) this.actions.hidden = true;
    this.setBadge("failed", t("answer.failed"));
    const detail = error.status ? ` (HTTP ${error.status})` : "";
    // A request refused as it was (400, 413…) would be refused again: edit it instead.
    const refused = error.resend && error.status >= 400 && error.status < 500 && !error.retryable;
    const retry = refused ? false : error.retryAt && error.retryAt > Date.now() ? error.retryAt : true;
    this.showStatus("error", `${error.message || t("answer.failedText")}${detail}`, retry);
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
    const interrupted = message.finish_reason === "interrupted";
    let text = message.content;
    // The store has the text up to its last save; this page may have seen a little more.
    if (interrupted && this.text.length > text.length && this.text.startsWith(text)) {
      text = this.text;
    }
    this.markScript(text, true);
    if (text !== this.text || !this.markdown.finished) {
      this.text = text;
      this.markdown.finish(text);
    }
    // An interrupted answer has no figures worth showing (no usage, no duration).
    this.setMetrics(interrupted ? [] : finalMetrics({
      ttftMs: message.ttft_ms,
      tokensPerSecond: storedRate(message),
      usage: message.usage,
      price: this.price(),
    }), false);
    if (message.status === "failed") {
      this.setBadge("failed", t("answer.failed"));
      this.showStatus("error", message.error || t("answer.failedText"), true);
    } else {
      this.showStatus(null);
      this.setOutcome(message.finish_reason || (message.status === "incomplete" ? "incomplete" : null), text);
    }
  }
}
