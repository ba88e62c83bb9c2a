// Which answer each branch ended at, so that going back to an earlier version of a
// message shows its whole branch again. The API's leaf_id shows the path to a message;
// a version's descendants are not listed, so this browser remembers them (localStorage).
// Switching versions on the page is here too.

import { announce } from "./announce.js";
import { NetworkError, api } from "./api.js";
import { t } from "./i18n.js";

export class Branches {
  constructor(conversationId) {
    this.key = `sluice.leaves.${conversationId}`;
  }

  read() {
    try {
      return JSON.parse(localStorage.getItem(this.key) || "{}");
    } catch {
      return {};
    }
  }

  /** Leaving the branch `ids` (the shown path from a switched message on), ending at `leaf`. */
  leave(ids, leaf) {
    if (!leaf) return;
    const leaves = this.read();
    for (const id of ids) if (id) leaves[id] = leaf;
    try {
      localStorage.setItem(this.key, JSON.stringify(leaves));
    } catch {
      // Storage full or disabled: versions still switch, only less deep.
    }
  }

  /** The message to show as the tip when switching to version `id`. */
  leafFor(id) {
    return this.read()[id] || id;
  }

  forget() {
    localStorage.removeItem(this.key);
  }
}

/** Remember where the branch the page leaves (its views from `fromIndex` on) ended. */
export function leaveBranch(app, fromIndex) {
  const views = app.transcript.views;
  new Branches(app.conversation.id).leave(
    views.slice(fromIndex).map((view) => view.id),
    views[views.length - 1]?.id,
  );
}

/** Show the previous (delta -1) or next (+1) version of `view`'s message, with its branch. */
export async function switchVersion(app, view, delta) {
  if (app.turn || !app.conversation || !view.message) return;
  const { ids, index } = view.message.versions;
  const target = ids[index + delta];
  if (!target) return;
  leaveBranch(app, app.transcript.views.indexOf(view));
  try {
    const leaf = new Branches(app.conversation.id).leafFor(target);
    await api.updateConversation(app.conversation.id, { leaf_id: leaf });
    const conversation = await api.conversation(app.conversation.id);
    app.show(conversation);
    app.transcript.sync(conversation.messages);
    announce(t("msg.version", { index: index + delta + 1, count: ids.length }));
    const again = app.transcript.views.find((v) => v.id === target);
    again?.versionsBox.querySelector(delta < 0 ? ".version-prev" : ".version-next")?.focus();
    app.resumeIfStreaming(conversation.messages);
  } catch (error) {
    if (error instanceof NetworkError) app.connection.lost();
    else announce(t("msg.versionFailed", { error: error.message }));
  }
}
