// Managing conversations from the page: save a conversation's settings (or a new chat's
// draft), rename one, delete one after asking. `app` is the page (main.js): its open
// conversation, settings panel and sidebar.

import { announce } from "./announce.js";
import { NetworkError, api } from "./api.js";
import { Branches } from "./branches.js";

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
    announce("Settings saved");
  } catch (error) {
    announce(`Settings not saved: ${error.message}`);
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
    announce("Renamed");
  } catch (error) {
    announce(`Not renamed: ${error.message}`);
  }
  app.sidebar.refresh();
}

export function removeConversation(app, conversation) {
  const dialog = $("#confirm-dialog");
  dialog.querySelector(".confirm-text").textContent =
    `Delete “${conversation.title || "New chat"}”? This cannot be undone.`;
  dialog.returnValue = "";
  dialog.onclose = async () => {
    if (dialog.returnValue !== "delete") return;
    try {
      await api.deleteConversation(conversation.id);
      new Branches(conversation.id).forget();
      announce("Conversation deleted");
      if (app.conversation?.id === conversation.id) app.newChat();
    } catch (error) {
      announce(`Not deleted: ${error.message}`);
    }
    app.sidebar.refresh();
  };
  dialog.showModal();
}
