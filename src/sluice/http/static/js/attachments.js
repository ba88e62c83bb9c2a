// Files sent with a question: picked with the paperclip, dropped on the message box or
// pasted into it; shown as chips (a thumbnail for an image) with a remove ×, checked here
// before they are sent (the gateway checks them again), and shown with the question.
// Photos larger than a message can carry are scaled down and sent as JPEG.

import { icon, iconButton } from "./icons.js";
import { t } from "./i18n.js";
import { el } from "./dom.js";

const KB = 1024;
const MB = 1024 * KB;
/** The gateway's own limits (chat/attachments.py). */
export const LIMITS = { files: 4, image: 5 * MB, text: 200 * KB };
/** All of a message's files, before base64: a request is at most 1 MiB by default, and
 * base64 grows a file by a third. */
const TOTAL = 700 * KB;
/** A photo is never decoded past this (memory), nor sent wider or taller than SIDE px. */
const DECODE_LIMIT = 40 * MB;
const SIDE = 2048;
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/gif", "image/webp"];
const TEXT_NAME = /\.(txt|md|markdown|json|jsonl|csv|tsv|py|js|mjs|ts|tsx|jsx|html?|css|xml|ya?ml|toml|ini|cfg|conf|log|sql|sh|bash|zsh|rs|go|java|kt|c|h|cc|cpp|hpp|cs|rb|php|swift|lua|r|tex|rst|org|diff|patch|env)$/i;
export const ACCEPT = [...IMAGE_TYPES, "text/*", ".md", ".json", ".csv", ".py", ".yaml", ".toml",
  ".log", ".sql", ".ts", ".js", ".rs", ".go"].join(",");

export function size(bytes) {
  return bytes >= MB ? `${(bytes / MB).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / KB))} KB`;
}

function kindOf(file) {
  if (IMAGE_TYPES.includes(file.type)) return "image";
  if (file.type.startsWith("image/")) return null; // SVG, HEIC…: not sent
  if (file.type.startsWith("text/") || file.type === "application/json" || TEXT_NAME.test(file.name)) {
    return "text";
  }
  return null;
}

function readAs(blob, how) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader[how](blob);
  });
}

/** A photo scaled to fit `budget` bytes as JPEG (white behind any transparency), or null. */
async function shrink(file, budget) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return null;
  }
  for (const [side, quality] of [[SIDE, 0.85], [SIDE, 0.7], [1536, 0.7], [1024, 0.7]]) {
    const scale = Math.min(1, side / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    const context = canvas.getContext("2d");
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", quality));
    if (blob && blob.size <= budget) {
      bitmap.close();
      return blob;
    }
  }
  bitmap.close();
  return null;
}

/** The pending files of the message box: chips, checks, and the body's `attachments`. */
export class Attachments {
  /** form: the composer; said(text): announce a change to screen readers. */
  constructor(form, said) {
    this.form = form;
    this.said = said;
    this.pending = []; // {name, media_type, size, kind, data (base64), preview (data: URL)}
    this.input = el("input", "attach-input");
    this.input.type = "file";
    this.input.multiple = true;
    this.input.accept = ACCEPT;
    this.input.hidden = true;
    this.input.id = "attach-input";
    this.button = iconButton("attach", t("attach.button"), "attach");
    this.button.id = "attach";
    this.button.dataset.i18nAttr = "aria-label=attach.button;title=attach.button";
    this.chips = el("ul", "attach-chips");
    this.chips.setAttribute("aria-label", t("attach.list"));
    this.chips.hidden = true;
    this.error = el("p", "attach-error");
    this.error.id = "attach-error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    const textarea = form.querySelector("textarea");
    form.insertBefore(this.button, textarea);
    form.prepend(this.chips, this.error);
    form.append(this.input);
    this.button.addEventListener("click", () => this.input.click());
    this.input.addEventListener("change", () => {
      this.add([...this.input.files]);
      this.input.value = ""; // the same file may be picked again after a remove
    });
    form.addEventListener("dragover", (event) => {
      if (![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      form.classList.add("dropping");
    });
    form.addEventListener("dragleave", () => form.classList.remove("dropping"));
    form.addEventListener("drop", (event) => {
      form.classList.remove("dropping");
      if (!event.dataTransfer.files.length) return;
      event.preventDefault();
      this.add([...event.dataTransfer.files]);
    });
    textarea.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files || [])];
      if (!files.length) return; // plain text pastes as text
      event.preventDefault();
      this.add(files);
    });
  }

  get used() {
    return this.pending.reduce((sum, file) => sum + file.size, 0);
  }

  showError(text) {
    this.error.textContent = text || "";
    this.error.hidden = !text;
  }

  async add(files) {
    this.showError("");
    const problems = [];
    for (const file of files) {
      const problem = await this.addOne(file);
      if (problem) problems.push(problem);
    }
    this.render();
    if (problems.length) this.showError(problems.join(" "));
    else this.said(t("attach.added", { count: this.pending.length }));
  }

  /** Adds `file`, or says why not. */
  async addOne(file) {
    if (this.pending.length >= LIMITS.files) return t("attach.tooMany", { limit: LIMITS.files });
    const kind = kindOf(file);
    if (!kind) return t("attach.unsupported", { name: file.name });
    const left = TOTAL - this.used;
    if (kind === "text") {
      if (file.size > LIMITS.text) {
        return t("attach.tooLarge", { name: file.name, size: size(file.size), limit: size(LIMITS.text) });
      }
      if (file.size > left) return t("attach.total", { name: file.name, limit: size(TOTAL) });
      const bytes = new Uint8Array(await readAs(file, "readAsArrayBuffer"));
      try {
        new TextDecoder("utf-8", { fatal: true }).decode(bytes);
      } catch {
        return t("attach.notText", { name: file.name });
      }
      const data = (await readAs(file, "readAsDataURL")).split(",")[1] || "";
      this.pending.push({ name: file.name, media_type: file.type || "text/plain", size: file.size, kind, data });
      return null;
    }
    let blob = file;
    let name = file.name;
    if (file.size > DECODE_LIMIT) {
      return t("attach.tooLarge", { name, size: size(file.size), limit: size(DECODE_LIMIT) });
    }
    if (file.size > Math.min(left, LIMITS.image)) {
      // Too large to send as it is: a photo, scaled down to fit.
      blob = left > 16 * KB ? await shrink(file, Math.min(left, LIMITS.image)) : null;
      if (!blob) return t("attach.total", { name, limit: size(TOTAL) });
      name = name.replace(/\.[^.]*$/, "") + ".jpg";
    }
    const url = await readAs(blob, "readAsDataURL");
    this.pending.push({
      name, media_type: blob.type, size: blob.size, kind, data: url.split(",")[1] || "", preview: url,
    });
    return null;
  }

  remove(index) {
    const [file] = this.pending.splice(index, 1);
    this.render();
    this.showError("");
    if (file) this.said(t("attach.removed", { name: file.name }));
    this.form.querySelector("textarea")?.focus();
  }

  render() {
    this.chips.replaceChildren(...this.pending.map((file, index) => {
      const chip = fileChip(file, file.preview);
      const remove = el("button", "attach-remove", "×");
      remove.type = "button";
      remove.setAttribute("aria-label", t("attach.remove", { name: file.name }));
      remove.title = remove.getAttribute("aria-label");
      remove.addEventListener("click", () => this.remove(index));
      chip.append(remove);
      return chip;
    }));
    this.chips.hidden = this.pending.length === 0;
  }

  /** The files to send, taken out of the box (the body's `attachments`), and their views. */
  take() {
    const files = this.pending;
    this.pending = [];
    this.render();
    this.showError("");
    return files;
  }
}

/** One file as a chip: a thumbnail for an image (`src`), a name and size for a text file. */
function fileChip(file, src) {
  const chip = el("li", `attach-chip ${file.kind}`);
  if (file.kind === "image" && src) {
    const image = el("img", "attach-thumb");
    image.src = src;
    image.alt = file.name;
    image.loading = "lazy";
    image.decoding = "async";
    chip.append(image);
  } else {
    chip.append(icon("file"));
  }
  const label = el("span", "attach-name", file.name);
  label.title = `${file.name} · ${size(file.size)}`;
  chip.append(label);
  return chip;
}

/** The files a question came with, above its bubble: `files` are the conversation read's
 * ({kind, name, size, url}) or, just sent, the pending ones (with a `preview`). */
export function showFiles(view, files) {
  const names = (files || []).map((file) => `${file.kind}:${file.name}`).join("|");
  if (names === (view.fileNames || "")) return;
  view.fileNames = names;
  view.files?.remove();
  view.files = null;
  if (!names) return;
  const list = el("ul", "msg-files");
  list.setAttribute("aria-label", t("attach.sent"));
  for (const file of files) {
    const chip = fileChip(file, file.url || file.preview);
    if (file.url) {
      const link = el("a", "attach-open");
      link.href = file.url;
      link.target = "_blank";
      link.rel = "noopener";
      link.append(...chip.childNodes);
      chip.append(link);
    }
    list.append(chip);
  }
  view.heading.after(list); // above the bubble (which an edit swaps for its form)
}
