// The conversation list: open, rename, delete, and full-text search (the server matches
// titles and message text). Pinned ones first (the server lists them so), then by date
// (Today, Yesterday…); a search lists its results with the text around the match, the
// match highlighted.

import { PINNED, dateGroup, dateTime, groupLabel, highlighted, relativeTime } from "./dates.js";
import { t } from "./i18n.js";
import { iconButton } from "./icons.js";

const PAGE = 100;
const API_PAGE = 200; // the most the API lists at once

export class Sidebar {
  /** hooks: list(q) -> conversations, rename(id, title), remove(conversation), pin(conversation, on) */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.list = root.querySelector("#conversations");
    this.empty = root.querySelector("#no-conversations");
    this.search = root.querySelector("#search");
    this.activeId = null;
    this.query = "";
    this.limit = PAGE;
    this.more = root.querySelector("#more-conversations");
    this.more.addEventListener("click", () => {
      this.limit += PAGE;
      this.refresh();
    });
    this.generation = 0;
    this.timer = 0;
    this.search.addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.setQuery(this.search.value.trim()), 180);
    });
    this.search.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.search.value) {
        event.preventDefault();
        event.stopPropagation();
        this.search.value = "";
        this.setQuery("");
      } else if (event.key === "ArrowDown") {
        event.preventDefault();
        this.list.querySelector("a")?.focus();
      }
    });
    // One tab stop for the whole list (the "roving" row); arrows move between rows.
    this.roving = null;
    this.list.addEventListener("keydown", (event) => this.onKey(event));
    this.list.addEventListener("focusin", (event) => {
      const li = event.target.closest("li");
      if (li && li.dataset.id !== this.roving) this.setRoving(li.dataset.id);
    });
  }

  setQuery(query) {
    if (query === this.query) return;
    this.query = query;
    this.limit = PAGE;
    this.refresh();
  }

  /** Read the list again (a newer call wins over a slower older one); returns it. */
  async refresh() {
    const generation = ++this.generation;
    const conversations = [];
    try {
      for (let offset = 0; offset < this.limit; offset += API_PAGE) {
        const size = Math.min(API_PAGE, this.limit - offset);
        const page = await this.hooks.list(this.query, size, offset);
        conversations.push(...page);
        if (page.length < size) break;
      }
    } catch {
      return null; // the connection banner says why
    }
    if (generation !== this.generation) return conversations;
    this.render(conversations);
    this.more.hidden = conversations.length < this.limit;
    return conversations;
  }

  render(conversations) {
    const focused = document.activeElement?.closest?.("li")?.dataset.id;
    const items = conversations.map((c) => this.item(c));
    if (!this.query) this.group(conversations, items);
    this.list.replaceChildren(...items);
    this.root.dataset.count = String(conversations.length);
    this.empty.hidden = conversations.length > 0;
    this.empty.textContent = this.query ? t("sidebar.noMatch", { query: this.query }) : t("sidebar.none");
    const ids = conversations.map((c) => c.id);
    this.setRoving(ids.includes(this.roving) ? this.roving
      : ids.includes(this.activeId) ? this.activeId : ids[0] ?? null);
    if (focused) this.list.querySelector(`li[data-id="${CSS.escape(focused)}"] a`)?.focus();
  }

  /** Label the first conversation of each group: Pinned, then by date (newest first). */
  group(conversations, items) {
    const now = new Date();
    let last = null;
    conversations.forEach((conversation, index) => {
      const group = conversation.pinned ? PINNED : dateGroup(conversation.updated_at, now);
      if (group === last) return;
      last = group;
      const label = document.createElement("span");
      label.className = "conversation-group";
      label.setAttribute("role", "heading");
      label.setAttribute("aria-level", "3");
      label.textContent = groupLabel(group);
      items[index].classList.add("group-start");
      items[index].dataset.group = group;
      items[index].prepend(label);
    });
  }

  setRoving(id) {
    this.roving = id;
    for (const li of this.list.children) {
      const index = li.dataset.id === id ? "0" : "-1";
      for (const control of li.querySelectorAll("a, button")) control.tabIndex = Number(index);
    }
  }

  item(conversation) {
    const li = document.createElement("li");
    li.dataset.id = conversation.id;
    const link = document.createElement("a");
    link.className = "conversation";
    link.href = `#/c/${encodeURIComponent(conversation.id)}`;
    const title = conversation.title || t("app.newChat");
    link.textContent = title;
    link.title = conversation.updated_at
      ? `${title}\n${relativeTime(conversation.updated_at)} · ${dateTime(conversation.updated_at)}`
      : title;
    if (this.query && conversation.snippet) {
      const snippet = document.createElement("span");
      snippet.className = "snippet";
      snippet.append(...highlighted(conversation.snippet, this.query));
      link.append(snippet);
    }
    if (conversation.id === this.activeId) {
      link.setAttribute("aria-current", "page");
      li.classList.add("current");
    }
    const pinned = Boolean(conversation.pinned);
    li.classList.toggle("pinned", pinned);
    const pin = iconButton("pin", t(pinned ? "sidebar.unpin" : "sidebar.pin", { title }), "pin");
    pin.setAttribute("aria-pressed", String(pinned));
    pin.addEventListener("click", () => this.hooks.pin(conversation, !pinned));
    const rename = iconButton("edit", t("sidebar.rename", { title }), "rename");
    rename.addEventListener("click", () => this.startRename(li, conversation));
    const remove = iconButton("trash", t("sidebar.delete", { title }), "delete");
    remove.addEventListener("click", () => this.hooks.remove(conversation));
    li.append(link, pin, rename, remove);
    return li;
  }

  startRename(li, conversation) {
    const link = li.querySelector("a");
    const input = document.createElement("input");
    input.className = "rename-input";
    input.value = conversation.title || "";
    input.maxLength = 500;
    input.setAttribute("aria-label", t("sidebar.newTitle"));
    let done = false;
    const finish = async (save) => {
      if (done) return;
      done = true;
      const title = input.value.trim();
      input.replaceWith(link);
      if (save && title && title !== conversation.title) {
        link.textContent = title;
        await this.hooks.rename(conversation.id, title);
      }
      link.focus();
    };
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        finish(true);
      } else if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        finish(false);
      }
    });
    input.addEventListener("blur", () => finish(true));
    link.replaceWith(input);
    input.focus();
    input.select();
  }

  setActive(id) {
    this.activeId = id;
    if (id && this.list.querySelector(`li[data-id="${CSS.escape(id)}"]`)) this.setRoving(id);
    for (const link of this.list.querySelectorAll("a.conversation")) {
      const current = link.parentElement.dataset.id === id;
      link.parentElement.classList.toggle("current", current);
      if (current) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }

  /** Up and down move between conversations; F2 renames, Delete deletes. */
  onKey(event) {
    const li = event.target.closest("li");
    if (li && event.target.matches("a.conversation")) {
      if (event.key === "F2") {
        event.preventDefault();
        li.querySelector("button.rename").click();
        return;
      }
      if (event.key === "Delete") {
        event.preventDefault();
        li.querySelector("button.delete").click();
        return;
      }
    }
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...this.list.querySelectorAll("a.conversation")];
    const at = links.indexOf(document.activeElement);
    if (at === -1) return;
    event.preventDefault();
    const next = event.key === "ArrowDown" ? at + 1 : at - 1;
    if (next < 0) this.search.focus();
    else links[Math.min(next, links.length - 1)].focus();
  }
}
