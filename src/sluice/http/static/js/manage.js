// Managing conversations from the page: save a conversation's settings (or a new chat's
// draft), rename one, delete one after asking. `app` is the page (main.js): its open
// conversation, settings panel and sidebar.

import { announce } from "./announce.js";
import { NetworkError, api } from "./api.js";
import { Branches } from "./branches.js";
import { t } from "./i18n.js";

const $ = (selector) => document.querySelector(selector);

export async function changeSettings(app, fields) {
  if (!app.conversation) {
    app.draft = { ...app.draft, ...fields };
    return;
  }
  try {
    const updated = await api.updateConversation(app.conversation.id, fields);
    app.conversation = { ...app.conversation, ...updated };
    app.settings.show(app.conversation);
    announce(t("settings.saved"));
  } catch (error) {
    announce(t("settings.notSaved", { error: error.message }));
    if (error instanceof NetworkError) app.connection.lost();
  }
}

export async function rename(app, id, title) {
  try {
    await api.updateConversation(id, { title });
    if (app.conversation?.id === id) {
      app.conversation.title = title;
      app.setTitle(title);
    }
    announce(t("manage.renamed"));
  } catch (error) {
    announce(t("manage.notRenamed", { error: error.message }));
  }
  app.sidebar.refresh();
}

/** Pin a conversation to the top of the list (`on`), or unpin it. */
export async function pin(app, conversation, on) {
  try {
    await api.updateConversation(conversation.id, { pinned: on });
    announce(t(on ? "sidebar.pinned" : "sidebar.unpinned"));
  } catch (error) {
    announce(t("sidebar.notPinned", { error: error.message }));
    if (error instanceof NetworkError) app.connection.lost();
  }
  await app.sidebar.refresh();
}

export function removeConversation(app, conversation) {
  const dialog = $("#confirm-dialog");
  dialog.querySelector(".confirm-text").textContent =
    t("confirm.text", { title: conversation.title || t("app.newChat") });
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "delete") return;
    try {
      await api.deleteConversation(conversation.id);
      new Branches(conversation.id).forget();
      announce(t("manage.deleted"));
      if (app.conversation?.id === conversation.id) app.newChat();
    } catch (error) {
      announce(t("manage.notDeleted", { error: error.message }));
    }
    app.sidebar.refresh();
  };
  dialog.showModal();
}
