// One message as shown: the parts every message has (its id, its versions "‹ 2 / 3 ›",
// its foot of actions) and a question's own — its bubble, editing and resending it, and
// the mark of a question that was never sent. A long question (a paste) is shown
// collapsed, with "Show more".

import { showFiles } from "./attachments.js";
import { t } from "./i18n.js";
import { iconButton } from "./icons.js";
import { el } from "./dom.js";

// Longer than this is shown collapsed: a paste, not something typed.
const LONG_LINES = 20;
const LONG_CHARS = 1500;
let bubbles = 0;

export function isLong(text) {
  if (text.length > LONG_CHARS) return true;
  let lines = 1;
  for (let at = text.indexOf("\n"); at !== -1; at = text.indexOf("\n", at + 1)) {
    if (++lines > LONG_LINES) return true;
  }
  return false;
}

export class MessageView {
  constructor(transcript, role) {
    this.transcript = transcript;
    this.role = role;
    this.id = null;
    this.message = null;
    this.el = el("article", `msg ${role}`);
    this.heading = el("h3", "sr-only", t(role === "user" ? "msg.youSaid" : "msg.assistantSaid"));
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
    const prev = iconButton("prev", t("msg.prevVersion"), "version-prev");
    const next = iconButton("next", t("msg.nextVersion"), "version-next");
    prev.disabled = versions.index === 0;
    next.disabled = versions.index >= versions.count - 1;
    const label = el("span", "version-label", `${versions.index + 1} / ${versions.count}`);
    label.setAttribute("aria-label", t("msg.version", { index: versions.index + 1, count: versions.count }));
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
    this.body.id = `question-${++bubbles}`;
    this.body.textContent = text;
    this.fold = el("button", "fold");
    this.fold.type = "button";
    this.fold.setAttribute("aria-controls", this.body.id);
    this.fold.addEventListener("click", () => this.setCollapsed(!this.collapsed));
    this.el.insertBefore(this.fold, this.foot);
    this.fitLength();
    const edit = iconButton("edit", t("msg.editResend"), "edit");
    edit.addEventListener("click", () => this.startEdit());
    const copy = iconButton("copy", t("msg.copyMessage"), "copy");
    copy.addEventListener("click", () => this.transcript.hooks.copy(this.text, copy));
    this.actions.append(copy, edit);
  }

  setMessage(message) {
    super.setMessage(message);
    showFiles(this, message.attachments);
    if (message.content !== this.text) {
      this.text = message.content;
      this.body.textContent = message.content;
      this.fitLength();
    }
  }

  /** A long question starts collapsed; a short one has no "Show more". */
  fitLength() {
    const long = isLong(this.text);
    this.fold.hidden = !long;
    this.body.classList.toggle("foldable", long);
    this.setCollapsed(long);
  }

  setCollapsed(on) {
    this.collapsed = on;
    this.body.classList.toggle("collapsed", on);
    this.fold.setAttribute("aria-expanded", String(!on));
    this.fold.textContent = t(on ? "msg.showMore" : "msg.showLess");
  }

  /** Not sent (offline, refused): marked, and editable although it has no id. */
  setUnsent(on) {
    this.unsent = on;
    this.el.classList.toggle("unsent", on);
    if (on && !this.unsentLabel) {
      this.unsentLabel = el("span", "unsent-label", t("msg.notSent"));
      this.foot.insertBefore(this.unsentLabel, this.actions);
    }
    if (this.unsentLabel) this.unsentLabel.hidden = !on;
  }

  startEdit() {
    if (this.editing || !(this.id || this.unsent)) return;
    this.editing = true;
    const form = el("form", "edit-form");
    const area = el("textarea", "edit-input");
    area.value = this.text;
    area.rows = Math.min(12, this.text.split("\n").length + 1);
    area.setAttribute("aria-label", t("msg.editLabel"));
    const send = el("button", "primary", t("msg.send"));
    send.type = "submit";
    const cancel = el("button", "", t("dialog.cancel"));
    cancel.type = "button";
    const buttons = el("div", "edit-buttons");
    buttons.append(cancel, send);
    form.append(area, buttons);
    const stop = () => {
      this.editing = false;
      form.replaceWith(this.body);
      this.foot.hidden = false;
      this.fold.hidden = !isLong(this.text);
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
    this.fold.hidden = true;
    area.focus();
    area.setSelectionRange(area.value.length, area.value.length);
  }
}

export { el };
