// Share links of the open conversation: a dialog that makes a read-only link (shown
// once, with a Copy button: the server keeps only its hash), and lists the live links
// with Revoke. Reading a link needs no sign-in; see shared.js for that page.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { el } from "./dom.js";
import { dateTime } from "./dates.js";

/**
 * `openers`: the buttons that open it. `hooks.current()` gives the open conversation's
 * id (null: nothing to share), `hooks.before()` runs before it opens (closes a menu),
 * `hooks.copy(text, button)` copies, `hooks.said(text)` announces.
 */
export class ShareDialog {
  constructor(dialog, openers, hooks) {
    this.dialog = dialog;
    this.hooks = hooks;
    this.id = null;
    this.fresh = null; // the link made in this dialog: {id, url}
    this.list = dialog.querySelector(".share-list");
    this.none = dialog.querySelector(".share-none");
    this.error = dialog.querySelector(".share-error");
    this.newBox = dialog.querySelector(".share-new");
    this.url = dialog.querySelector(".share-url");
    this.createButton = dialog.querySelector(".share-create");
    for (const opener of openers) opener.addEventListener("click", () => this.open());
    this.createButton.addEventListener("click", () => this.create());
    dialog.querySelector(".share-copy").addEventListener("click", (event) =>
      this.hooks.copy(this.url.value, event.currentTarget));
    this.url.addEventListener("focus", () => this.url.select());
    window.addEventListener("sluice:language", () => {
      if (this.dialog.open) this.refresh(); // the rows' words and dates
    });
    this.list.addEventListener("click", (event) => {
      const revoke = event.target.closest("[data-share]");
      if (revoke) this.revoke(revoke.dataset.share, revoke);
    });
  }

  async open() {
    const id = this.hooks.current();
    if (!id) return;
    this.hooks.before?.();
    this.id = id;
    this.fresh = null;
    this.newBox.hidden = true;
    this.url.value = "";
    this.showError(null);
    this.list.replaceChildren();
    this.none.hidden = true;
    if (!this.dialog.open) this.dialog.showModal();
    await this.refresh();
  }

  showError(text) {
    this.error.hidden = !text;
    this.error.textContent = text || "";
  }

  async refresh() {
    const id = this.id;
    let shares;
    try {
      shares = (await api.shares(id)).data;
    } catch (error) {
      if (id === this.id) this.showError(t("share.listFailed", { error: error.message }));
      return;
    }
    if (id !== this.id) return;
    const live = shares.filter((share) => share.revoked_at === null);
    this.none.hidden = live.length > 0;
    this.list.replaceChildren(...live.map((share) => this.row(share)));
  }

  row(share) {
    const item = el("li", "share-item");
    item.dataset.id = share.id;
    const created = dateTime(share.created_at);
    const label = share.id === this.fresh?.id ? "share.itemNew" : "share.item";
    item.append(el("span", "share-when", t(label, { when: created })));
    const revoke = el("button", "share-revoke", t("share.revoke"));
    revoke.type = "button";
    revoke.dataset.share = share.id;
    revoke.setAttribute("aria-label", t("share.revokeLabel", { when: created }));
    item.append(revoke);
    return item;
  }

  async create() {
    const id = this.id;
    this.showError(null);
    this.createButton.disabled = true;
    try {
      const share = await api.createShare(id);
      if (id !== this.id) return;
      this.fresh = { id: share.id, url: share.url };
      this.url.value = share.url;
      this.newBox.hidden = false;
      this.url.focus();
      this.hooks.said(t("share.created"));
      await this.refresh();
    } catch (error) {
      this.showError(t("share.createFailed", { error: error.message }));
    } finally {
      this.createButton.disabled = false;
    }
  }

  async revoke(shareId, button) {
    const id = this.id;
    button.disabled = true;
    this.showError(null);
    try {
      await api.revokeShare(id, shareId);
      if (this.fresh?.id === shareId) {
        this.fresh = null;
        this.newBox.hidden = true;
        this.url.value = "";
      }
      this.hooks.said(t("share.revoked"));
      await this.refresh();
    } catch (error) {
      button.disabled = false;
      this.showError(t("share.revokeFailed", { error: error.message }));
    }
  }
}
