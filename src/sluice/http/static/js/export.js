// Export a conversation as a file: Markdown to read, JSON to keep (the API's own shape,
// GET /v1/conversations/{id}). The formats are `sluice history export`'s, so a file
// saved from the page and one saved from the terminal are the same (English headings,
// whatever the page's language).

import { t } from "./i18n.js";

function iso(seconds) {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The Markdown of `sluice history export` (sluice.cli.history.to_markdown). */
export function toMarkdown(conversation) {
  const lines = [`# ${conversation.title || "Untitled conversation"}`, ""];
  lines.push(`- id: \`${conversation.id}\``);
  if (conversation.model) lines.push(`- model: ${conversation.model}`);
  lines.push(`- started: ${iso(conversation.created_at)}`);
  if (conversation.system_prompt) lines.push(`- system prompt: ${conversation.system_prompt}`);
  lines.push("");
  for (const message of conversation.messages) {
    lines.push(message.role === "user" ? "## You" : `## ${message.model || "Assistant"}`);
    lines.push("", message.content.trimEnd(), "");
    if (message.role !== "user" && message.status !== "complete") {
      lines.push(`*(${message.status})*`, "");
    }
  }
  return `${lines.join("\n")}\n`; // as `sluice history export` writes it
}

/** The conversation as the API gives it, indented. */
export function toJson(conversation) {
  return `${JSON.stringify(conversation, null, 2)}\n`;
}

/** A file name from the title: letters, digits and dashes, never empty. */
export function fileName(conversation, extension) {
  const stem = (conversation.title || "conversation")
    .normalize("NFKC")
    .replace(/[^\p{L}\p{N}]+/gu, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60) || "conversation";
  return `${stem}.${extension}`;
}

/** Save `text` as a download named `name` (a Blob URL, freed once the click is handled). */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export const FORMATS = {
  markdown: { extension: "md", type: "text/markdown;charset=utf-8", render: toMarkdown },
  json: { extension: "json", type: "application/json;charset=utf-8", render: toJson },
};

/**
 * The export menu of the open conversation: a button that opens a small menu of
 * formats. `current()` gives the open conversation's id (null: nothing to export);
 * `load(id)` reads it from the server (the stored text, not what is on screen).
 */
export class ExportMenu {
  constructor(button, menu, hooks) {
    this.button = button;
    this.menu = menu;
    this.hooks = hooks;
    button.addEventListener("click", () => this.toggle());
    menu.addEventListener("click", (event) => {
      const item = event.target.closest("[data-format]");
      if (item) this.export(item.dataset.format);
    });
    menu.addEventListener("keydown", (event) => this.onKey(event));
    document.addEventListener("click", (event) => {
      if (!this.menu.hidden && !event.target.closest(".export-wrap")) this.toggle(false);
    });
  }

  items() {
    return [...this.menu.querySelectorAll("[role=menuitem]")];
  }

  toggle(open = this.menu.hidden) {
    this.menu.hidden = !open;
    this.button.setAttribute("aria-expanded", String(open));
    if (open) this.items()[0]?.focus();
  }

  onKey(event) {
    const items = this.items();
    const at = items.indexOf(document.activeElement);
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      this.toggle(false);
      this.button.focus();
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const step = event.key === "ArrowDown" ? 1 : -1;
      items[(at + step + items.length) % items.length]?.focus();
    }
  }

  async export(format) {
    this.toggle(false);
    const id = this.hooks.current();
    const spec = FORMATS[format];
    if (!id || !spec) return;
    try {
      const conversation = await this.hooks.load(id);
      download(fileName(conversation, spec.extension), spec.render(conversation), spec.type);
      this.hooks.said(t("export.done", { format: format === "json" ? "JSON" : "Markdown" }));
    } catch (error) {
      this.hooks.said(t("export.failed", { error: error.message }));
    }
  }
}
