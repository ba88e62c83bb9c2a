// Markdown -> DOM, as a stream: finished blocks are rendered once and kept; only the
// open tail is rendered again when more text arrives. Code is highlighted once its fence
// closes. Everything from the model goes into Text nodes (see inline.js): no HTML is
// ever parsed from model output.

import { FENCE_OPEN, LIST_ITEM, QUOTE, TABLE_SEP, scanBlocks } from "./blocks.js";
import { highlight } from "./highlight.js";
import { t } from "./i18n.js";
import { renderInline } from "./inline.js";

const MAX_DEPTH = 8;
const CHUNK = 24;
const FRAME_BUDGET_MS = 8;

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

/** Render all of `text` as finished markdown; returns the block nodes. */
export function renderMarkdown(text, depth = 0, open = false) {
  return scanBlocks(text, 0, !open).map((block, index, all) =>
    renderBlock(text, block, depth, open && index === all.length - 1),
  );
}

/** One block's DOM. `open`: its text is still arriving (tolerant of half-written syntax). */
export function renderBlock(text, block, depth, open) {
  const source = text.slice(block.start, block.end).replace(/\n+$/, "");
  switch (block.kind) {
    case "fence":
      return renderFence(block, open);
    case "heading": {
      const m = /^ {0,3}(#{1,6})(.*)$/.exec(source);
      const level = m[1].length;
      const h = el(`h${level}`);
      renderInline(m[2].replace(/[ \t]+#+[ \t]*$/, "").trim(), h, open);
      return h;
    }
    case "hr":
      return el("hr");
    case "list":
      return depth > MAX_DEPTH ? plain(source) : renderList(source, depth, open);
    case "quote":
      return depth > MAX_DEPTH ? plain(source) : renderQuote(source, depth, open);
    case "table":
      return renderTable(source, open);
    default:
      return renderParagraph(source, open);
  }
}

function plain(source) {
  const p = el("p");
  p.textContent = source;
  return p;
}

function renderParagraph(source, open) {
  const p = el("p");
  const lines = source.split("\n").map((line) => line.replace(/^[ \t]+/, ""));
  let text = lines.join("\n");
  if (open) {
    // Half-written block syntax at the very end ("#", "-", "1.") is not shown as text yet.
    text = text.replace(/(^|\n)(?:#{1,6}|[-*+]|\d{1,9}[.)]|`{1,2}|~{1,2})$/, "");
  }
  renderInline(text, p, open);
  return p;
}

function renderFence(block, open) {
  const wrap = el("div", "code-block");
  const head = el("div", "code-head");
  const lang = el("span", "code-lang");
  lang.textContent = block.info || "text";
  head.appendChild(lang);
  const pre = el("pre");
  const code = el("code");
  pre.appendChild(code);
  wrap.append(head, pre);
  let body = block.body.replace(/\n$/, "");
  if (open) {
    // The closing fence being typed is not code.
    body = body.replace(/(^|\n) {0,3}(`{1,}|~{1,})$/, "");
    code.textContent = body;
    wrap.classList.add("open");
  } else {
    highlight(code, body, block.info);
    const copy = el("button", "copy-code");
    copy.type = "button";
    copy.textContent = t("copy.button");
    copy.setAttribute("aria-label", t("copy.code", { lang: block.info || t("copy.codeDefault") }));
    head.appendChild(copy);
  }
  return wrap;
}

function renderQuote(source, depth, open) {
  const quote = el("blockquote");
  const inner = source
    .split("\n")
    .map((line) => line.replace(/^ {0,3}> ?/, ""))
    .join("\n");
  quote.append(...renderMarkdown(inner, depth + 1, open));
  return quote;
}

function indentOf(line) {
  return line.length - line.replace(/^[ \t]+/, "").length;
}

function renderList(source, depth, open) {
  // Items: a marker line plus its continuation lines, dedented by the content offset.
  const items = [];
  let current = null;
  for (const line of source.split("\n")) {
    const m = LIST_ITEM.exec(line);
    if (m && (!current || indentOf(line) < current.offset)) {
      const marker = m[2];
      current = {
        ordered: /\d/.test(marker[0]),
        number: parseInt(marker, 10),
        bullet: marker[marker.length - 1],
        offset: m[0].length,
        lines: [line.slice(m[0].length)],
      };
      items.push(current);
    } else if (current) {
      const strip = Math.min(current.offset, indentOf(line));
      current.lines.push(line.slice(strip));
    }
  }
  const lists = [];
  let list = null;
  for (const item of items) {
    if (!list || list.ordered !== item.ordered || list.bullet !== item.bullet) {
      const node = el(item.ordered ? "ol" : "ul");
      if (item.ordered && item.number !== 1) node.start = item.number;
      list = { node, ordered: item.ordered, bullet: item.bullet };
      lists.push(list);
    }
    list.node.appendChild(renderItem(item, depth, open && item === items[items.length - 1]));
  }
  if (lists.length === 1) return lists[0].node;
  const wrap = el("div", "lists");
  wrap.append(...lists.map((l) => l.node));
  return wrap;
}

function renderItem(item, depth, open) {
  const li = el("li");
  let text = item.lines.join("\n").replace(/\n+$/, "");
  const task = /^\[([ xX])\][ \t]+/.exec(text);
  if (task) {
    const box = el("input");
    box.type = "checkbox";
    box.disabled = true;
    box.checked = task[1] !== " ";
    li.classList.add("task");
    li.appendChild(box);
    text = text.slice(task[0].length);
  }
  const simple = !text.includes("\n\n") && !text.split("\n").some(
    (line) => LIST_ITEM.test(line) || FENCE_OPEN.test(line) || QUOTE.test(line) ||
      TABLE_SEP.test(line) || /^ {0,3}#{1,6}[ \t]/.test(line),
  );
  if (simple) {
    renderInline(text.split("\n").map((l) => l.trim()).join("\n"), li, open);
  } else {
    const nodes = renderMarkdown(text, depth + 1, open);
    if (!text.includes("\n\n")) {
      // A tight item: its paragraphs are plain lines, not spaced-out blocks.
      for (const node of nodes) {
        if (node.tagName === "P") li.append(...node.childNodes);
        else li.appendChild(node);
      }
    } else {
      li.append(...nodes);
    }
  }
  return li;
}

function splitRow(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  const cells = [];
  let cell = "";
  let inCode = 0;
  for (let i = 0; i < row.length; i++) {
    const c = row[i];
    if (c === "\\" && row[i + 1] === "|") {
      cell += "|";
      i += 1;
    } else if (c === "`") {
      inCode = inCode ? 0 : 1;
      cell += c;
    } else if (c === "|" && !inCode) {
      cells.push(cell.trim());
      cell = "";
    } else {
      cell += c;
    }
  }
  cells.push(cell.trim());
  return cells;
}

function renderTable(source, open) {
  const lines = source.split("\n").filter((line) => line.trim());
  const wrap = el("div", "table-wrap");
  const table = el("table");
  wrap.appendChild(table);
  const header = splitRow(lines[0] || "");
  let aligns = [];
  let body = lines.slice(1);
  if (body.length && TABLE_SEP.test(body[0]) && body[0].includes("-")) {
    aligns = splitRow(body[0]).map((spec) =>
      spec.startsWith(":") && spec.endsWith(":") ? "center" : spec.endsWith(":") ? "right"
        : spec.startsWith(":") ? "left" : "",
    );
    body = body.slice(1);
  } else if (open && body.length === 1 && /^[ \t|:-]*$/.test(body[0])) {
    body = []; // the separator row is being written
  }
  const thead = el("thead");
  const tr = el("tr");
  header.forEach((cell, index) => {
    const th = el("th");
    th.scope = "col";
    if (aligns[index]) th.classList.add(`align-${aligns[index]}`);
    renderInline(cell, th, open && body.length === 0);
    tr.appendChild(th);
  });
  thead.appendChild(tr);
  table.appendChild(thead);
  if (body.length) {
    const tbody = el("tbody");
    body.forEach((line, rowIndex) => {
      const cells = splitRow(line);
      const row = el("tr");
      header.forEach((_, index) => {
        const td = el("td");
        if (aligns[index]) td.classList.add(`align-${aligns[index]}`);
        const last = open && rowIndex === body.length - 1;
        renderInline(cells[index] ?? "", td, last);
        row.appendChild(td);
      });
      tbody.appendChild(row);
    });
    table.appendChild(tbody);
  }
  return wrap;
}

/**
 * A growing markdown document in `root`. update(text) with the whole text so far;
 * finish(text) when it is complete. Finished blocks are never touched again.
 */
export class StreamingMarkdown {
  constructor(root) {
    this.root = root;
    this.reset();
  }

  /**
   * Finished blocks go into chunks of CHUNK: the browser skips laying out and painting
   * chunks out of view (CSS content-visibility), and a long answer's container has a few
   * dozen children instead of thousands.
   */
  commit(node) {
    if (!this.chunk || this.chunk.childElementCount >= CHUNK) {
      this.chunk = document.createElement("div");
      this.chunk.className = "md-chunk";
      this.root.appendChild(this.chunk);
    }
    this.chunk.appendChild(node);
    this.blocksRendered += 1;
  }

  reset() {
    this.root.replaceChildren();
    this.chunk = null;
    this.text = "";
    this.committed = 0; // text[0:committed] is rendered for good
    this.tail = []; // nodes of the open blocks
    this.tailKey = "";
    this.tailCode = null;
    this.finished = false;
    this.behind = false;
    this.blocksRendered = 0;
  }

  /** Show `text` (the whole text so far). False: more to draw, call again next frame. */
  update(text) {
    if (text === this.text && !this.behind) return true;
    return this.render(text, false);
  }

  finish(text) {
    if (this.finished && text === this.text) return;
    this.render(text, true);
    this.finished = true;
  }

  render(text, final) {
    if (this.finished || text.length < this.committed ||
        !text.startsWith(this.text.slice(0, this.committed))) {
      this.reset();
    }
    this.text = text;
    const blocks = scanBlocks(text, this.committed, final);
    let open = blocks.findIndex((block) => !block.closed);
    if (open === -1) open = blocks.length;
    const done = blocks.slice(0, open);
    let rest = blocks.slice(open);
    // A growing code block only gets its new text: no new nodes, no re-highlighting.
    const key = rest.length ? `${rest[0].kind}:${rest[0].start}:${rest.length}` : "";
    if (!done.length && rest.length === 1 && rest[0].kind === "fence" && key === this.tailKey &&
        this.tailCode && rest[0].infoComplete) {
      const body = rest[0].body.replace(/\n$/, "").replace(/(^|\n) {0,3}(`{1,}|~{1,})$/, "");
      if (this.tailCode.data !== body) this.tailCode.data = body;
      return;
    }
    for (const node of this.tail) node.remove();
    this.tail = [];
    this.tailCode = null;
    // A big backlog (a replay, a burst) is drawn over several frames, not all in one.
    const started = performance.now();
    this.behind = false;
    for (const block of done) {
      this.commit(renderBlock(text, block, 0, false));
      this.committed = block.end;
      if (!final && block !== done[done.length - 1] &&
          performance.now() - started > FRAME_BUDGET_MS) {
        this.behind = true;
        rest = [];
        break;
      }
    }
    for (const block of rest) {
      const node = renderBlock(text, block, 0, true);
      this.tail.push(node);
      this.root.appendChild(node);
    }
    this.tailKey = key;
    if (rest.length === 1 && rest[0].kind === "fence") {
      const code = this.tail[0].querySelector("code");
      if (!code.firstChild) code.appendChild(document.createTextNode(""));
      this.tailCode = code.firstChild;
    }
    return !this.behind;
  }
}
