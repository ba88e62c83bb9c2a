// The conversation as shown: one view per message, in the conversation's current branch.
// Views are kept and updated in place (ids, versions, metrics) so that nothing already
// on screen is rebuilt when the server's copy of the conversation is read again.

import { AnswerView } from "./answer.js";
import { t } from "./i18n.js";
import { QuestionView, el } from "./message.js";

export class Transcript {
  /**
   * hooks: version(view, delta), edit(view, text), regenerate(view), retry(view),
   * editUnsent(answerView), copy(text, button)
   */
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
    // Questions not sent stay at the end, whatever the server's copy says.
    const unsent = this.views.filter((view) => view.unsent);
    if (unsent.length) {
      this.views = this.views.filter((view) => !view.unsent);
      for (const view of unsent) view.el.remove();
    }
    this.syncStored(messages);
    for (const view of unsent) this.add(view);
  }

  /** Drop the questions not sent (and their failed answers). */
  dropUnsent() {
    for (const view of this.views.filter((v) => v.unsent)) view.el.remove();
    this.views = this.views.filter((view) => !view.unsent);
    this.update();
  }

  syncStored(messages) {
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

  /** The question an answer view answers (the view just before it). */
  questionOf(view) {
    const question = this.views[this.views.indexOf(view) - 1];
    return question?.role === "user" ? question : null;
  }

  last(role) {
    for (let i = this.views.length - 1; i >= 0; i--) {
      if (!role || this.views[i].role === role) return this.views[i];
    }
    return null;
  }

  /** Only the last answer offers regenerate; a question left without one offers it. */
  update() {
    const lastAnswer = this.views.findLast((view) => view.role === "assistant" && !view.unsent);
    for (const view of this.views) {
      if (view.regenerateButton) view.regenerateButton.hidden = view !== lastAnswer;
    }
    this.root.classList.toggle("empty", this.views.length === 0);
    const last = this.views[this.views.length - 1];
    const unanswered = last?.role === "user" && !last.editing && Boolean(last.id);
    if (unanswered && !this.unanswered) {
      this.unanswered = el("div", "unanswered");
      this.unanswered.append(el("span", "", t("msg.unanswered")));
      const button = el("button", "", t("msg.answerIt"));
      button.type = "button";
      button.addEventListener("click", () => this.hooks.regenerate(null));
      this.unanswered.appendChild(button);
    }
    if (unanswered) this.root.appendChild(this.unanswered);
    else this.unanswered?.remove();
  }
}
