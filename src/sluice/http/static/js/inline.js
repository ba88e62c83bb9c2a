// Inline markdown -> DOM nodes. Escape-first by construction: every piece of model text
// becomes a Text node (never markup); only elements from a fixed list are created, and
// the only attributes set are checked link addresses and plain-text titles.
// https://spec.commonmark.org/0.31.2/#inlines, simplified for chat output.

import { t } from "./i18n.js";
import { decodeEntities, makeLink, safeHref } from "./links.js";

const PUNCT = /[!-/:-@[-`{-~]/;
const SPECIAL = /[\\`![<*_~\n]|https?:\/\/|[\u202a-\u202e\u2066-\u2069]/g;
const MAX_DEPTH = 12;

function isSpace(c) {
  return c === undefined || c === " " || c === "\t" || c === "\n" || c === "\u00a0";
}

function isWordChar(c) {
  return c !== undefined && /[\p{L}\p{N}]/u.test(c);
}

function backtickRun(src, i) {
  let n = 0;
  while (src[i + n] === "`") n += 1;
  return n;
}

/** Where the code span opened by `n` backticks at `i` closes, or -1. */
function codeClose(src, i, n) {
  let j = i + n;
  for (;;) {
    j = src.indexOf("`", j);
    if (j === -1) return -1;
    const run = backtickRun(src, j);
    if (run === n) return j;
    j += run;
  }
}

/** The next `delim` at or after `from` that can close, skipping code spans and escapes. */
function findCloser(src, from, delim) {
  const c = delim[0];
  for (let j = from; j < src.length; j++) {
    const ch = src[j];
    if (ch === "\\") {
      j += 1;
      continue;
    }
    if (ch === "`") {
      const n = backtickRun(src, j);
      const close = codeClose(src, j, n);
      if (close === -1) return -1;
      j = close + n - 1;
      continue;
    }
    if (ch !== c) continue;
    let run = 0;
    while (src[j + run] === c) run += 1;
    const before = src[j - 1];
    const after = src[j + run];
    const fits = delim.length === 1 ? run === 1 || run >= 3 : run >= delim.length;
    if (fits && !isSpace(before) && j > from && !(c === "_" && isWordChar(after))) {
      // "***a***": the strong closer is the last two of the run.
      return delim.length === 2 ? j + run - 2 : j;
    }
    j += run - 1;
  }
  return -1;
}

/** `[text](dest "title")` at `i` ("[" position): {textEnd, dest, title, end} or a reason. */
function parseLink(src, i) {
  let depth = 0;
  let j = i;
  for (; j < src.length; j++) {
    const ch = src[j];
    if (ch === "\\") {
      j += 1;
    } else if (ch === "`") {
      const n = backtickRun(src, j);
      const close = codeClose(src, j, n);
      if (close === -1) break;
      j = close + n - 1;
    } else if (ch === "[") {
      depth += 1;
    } else if (ch === "]") {
      depth -= 1;
      if (depth === 0) break;
    } else if (ch === "\n" && src[j + 1] === "\n") {
      break;
    }
  }
  if (j >= src.length || src[j] !== "]") return { incomplete: j >= src.length };
  const textEnd = j;
  if (src[j + 1] !== "(") return { incomplete: j + 1 >= src.length, textEnd };
  let k = j + 2;
  while (src[k] === " " || src[k] === "\t") k += 1;
  let dest = "";
  if (src[k] === "<") {
    const close = src.indexOf(">", k);
    if (close === -1) return { incomplete: true, textEnd };
    dest = src.slice(k + 1, close);
    k = close + 1;
  } else {
    let parens = 0;
    const begin = k;
    for (; k < src.length; k++) {
      const ch = src[k];
      if (ch === "\\") k += 1;
      else if (ch === "(") parens += 1;
      else if (ch === ")") {
        if (parens === 0) break;
        parens -= 1;
      } else if (ch === " " || ch === "\t" || ch === "\n") break;
    }
    dest = src.slice(begin, k);
  }
  while (src[k] === " " || src[k] === "\t" || src[k] === "\n") k += 1;
  let title = "";
  const quote = src[k];
  if (quote === '"' || quote === "'" || quote === "(") {
    const closer = quote === "(" ? ")" : quote;
    let m = k + 1;
    for (; m < src.length && src[m] !== closer; m++) if (src[m] === "\\") m += 1;
    if (m >= src.length) return { incomplete: true, textEnd };
    title = src.slice(k + 1, m);
    k = m + 1;
    while (src[k] === " " || src[k] === "\t") k += 1;
  }
  if (k >= src.length) return { incomplete: true, textEnd };
  if (src[k] !== ")") return { textEnd };
  return { textEnd, dest, title: decodeEntities(title.replace(/\\(.)/g, "$1")), end: k + 1 };
}

const BARE_URL = /^https?:\/\/[^\s<>"]+/;

function trimUrl(url) {
  // Trailing punctuation belongs to the sentence; a closing paren only if unbalanced.
  for (;;) {
    const last = url[url.length - 1];
    if (".,:;!?'\"*_~".includes(last)) url = url.slice(0, -1);
    else if (last === ")" && (url.split("(").length < url.split(")").length)) url = url.slice(0, -1);
    else return url;
  }
}

class InlineWriter {
  constructor(parent) {
    this.parent = parent;
    this.text = "";
  }

  add(text) {
    this.text += text;
  }

  flush() {
    if (!this.text) return;
    appendText(this.parent, decodeEntities(this.text));
    this.text = "";
  }

  node(node) {
    this.flush();
    this.parent.appendChild(node);
    return node;
  }
}

/** Text into `parent`, with bidirectional overrides shown as visible marks, not obeyed. */
export function appendText(parent, text) {
  if (!/[\u202a-\u202e\u2066-\u2069]/.test(text)) {
    parent.appendChild(document.createTextNode(text));
    return;
  }
  const parts = text.split(/([\u202a-\u202e\u2066-\u2069])/);
  for (const part of parts) {
    if (!part) continue;
    if (/^[\u202a-\u202e\u2066-\u2069]$/.test(part)) {
      const mark = document.createElement("span");
      mark.className = "ctrl";
      mark.textContent = `U+${part.codePointAt(0).toString(16).toUpperCase()}`;
      mark.title = t("inline.bidi");
      parent.appendChild(mark);
    } else {
      parent.appendChild(document.createTextNode(part));
    }
  }
}

/**
 * Render inline markdown `src` into `parent`. `open`: the text is still arriving, so an
 * opener with no closer yet styles the rest (it is literal once the text is final).
 */
export function renderInline(src, parent, open = false, depth = 0) {
  const out = new InlineWriter(parent);
  if (depth > MAX_DEPTH) {
    out.add(src);
    out.flush();
    return;
  }
  let i = 0;
  SPECIAL.lastIndex = 0;
  while (i < src.length) {
    SPECIAL.lastIndex = i;
    const found = SPECIAL.exec(src);
    if (!found) {
      out.add(src.slice(i));
      break;
    }
    if (found.index > i) out.add(src.slice(i, found.index));
    i = found.index;
    const c = src[i];
    const consumed = special(src, i, c, out, open, depth);
    i = consumed > i ? consumed : i + 1;
    if (consumed <= found.index) out.add(c);
  }
  out.flush();
}

/** Handle the special character at `i`; returns the index after what it consumed. */
function special(src, i, c, out, open, depth) {
  switch (c) {
    case "\\": {
      const next = src[i + 1];
      if (next === "\n") {
        out.node(document.createElement("br"));
        return i + 2;
      }
      if (next !== undefined && PUNCT.test(next)) {
        out.add(next);
        return i + 2;
      }
      return i;
    }
    case "\n":
      out.node(document.createElement("br"));
      return i + 1;
    case "`": {
      const n = backtickRun(src, i);
      const close = codeClose(src, i, n);
      if (close === -1 && !open) {
        out.add("`".repeat(n));
        return i + n;
      }
      let body = src.slice(i + n, close === -1 ? src.length : close).replace(/\n/g, " ");
      if (body.length > 2 && body[0] === " " && body[body.length - 1] === " " && body.trim()) {
        body = body.slice(1, -1);
      }
      const code = out.node(document.createElement("code"));
      code.textContent = body;
      return close === -1 ? src.length : close + n;
    }
    case "!": {
      if (src[i + 1] !== "[") return i;
      const end = link(src, i + 1, out, open, depth, true);
      return end === -1 ? i : end;
    }
    case "[": {
      const end = link(src, i, out, open, depth, false);
      return end === -1 ? i : end;
    }
    case "<": {
      const m = /^<([a-zA-Z][a-zA-Z0-9+.-]{1,31}:[^\s<>]*)>/.exec(src.slice(i, i + 2048));
      if (!m) return i;
      const href = safeHref(m[1]);
      if (!href) return i; // shown as typed, inert
      const a = out.node(makeLink(href));
      a.textContent = m[1];
      return i + m[0].length;
    }
    case "h": {
      if (isWordChar(src[i - 1])) return i;
      const m = BARE_URL.exec(src.slice(i, i + 4096));
      if (!m) return i;
      const url = trimUrl(m[0]);
      const href = safeHref(url);
      if (!href) return i;
      const a = out.node(makeLink(href));
      a.textContent = url;
      return i + url.length;
    }
    case "*":
    case "_":
    case "~":
      return emphasis(src, i, c, out, open, depth);
    default:
      if (/[\u202a-\u202e\u2066-\u2069]/.test(c)) {
        out.add(c); // appendText turns it into a visible mark
        return i + 1;
      }
      return i;
  }
}

function emphasis(src, i, c, out, open, depth) {
  let run = 0;
  while (src[i + run] === c) run += 1;
  const before = src[i - 1];
  const after = src[i + run];
  if (c === "~" && run !== 2) return addLiteral(out, c.repeat(run), i + run);
  const leftFlanking = !isSpace(after) && !(c === "_" && isWordChar(before));
  if (!leftFlanking) return addLiteral(out, c.repeat(run), i + run);
  const size = c === "~" ? 2 : run >= 2 ? 2 : 1;
  const delim = c.repeat(size);
  const close = findCloser(src, i + size, delim);
  const tag = c === "~" ? "del" : size === 2 ? "strong" : "em";
  if (close === -1) {
    if (!open || src.length - (i + size) === 0) {
      return addLiteral(out, delim, i + size);
    }
    const element = out.node(document.createElement(tag));
    renderInline(src.slice(i + size), element, true, depth + 1);
    return src.length;
  }
  const element = out.node(document.createElement(tag));
  renderInline(src.slice(i + size, close), element, false, depth + 1);
  return close + size;
}

function addLiteral(out, text, next) {
  out.add(text);
  return next;
}

function link(src, i, out, open, depth, image) {
  const parsed = parseLink(src, i);
  if (parsed.end === undefined) {
    if (open && parsed.incomplete) {
      // Still arriving: show the words, not the brackets, until the address is complete.
      const pending = out.node(document.createElement("span"));
      pending.className = "link-pending";
      const textEnd = parsed.textEnd ?? src.length;
      renderInline(src.slice(i + 1, textEnd), pending, true, depth + 1);
      return src.length;
    }
    return -1;
  }
  const label = src.slice(i + 1, parsed.textEnd);
  const href = safeHref(parsed.dest);
  if (image) {
    // Model output never makes the page fetch anything: an image becomes a link to it.
    const alt = decodeEntities(label) || "image";
    if (href && !href.startsWith("mailto:")) {
      const a = out.node(makeLink(href, parsed.title));
      a.className = "image-link";
      a.textContent = `🖼 ${alt}`;
    } else {
      const span = out.node(document.createElement("span"));
      span.className = "link-blocked";
      span.title = t("inline.image");
      span.textContent = `🖼 ${alt}`;
    }
    return parsed.end;
  }
  if (href) {
    const a = out.node(makeLink(href, parsed.title));
    renderInline(label, a, false, depth + 1);
    if (!a.textContent) a.textContent = href;
  } else {
    const span = out.node(document.createElement("span"));
    span.className = "link-blocked";
    span.title = t("inline.link");
    renderInline(label, span, false, depth + 1);
  }
  return parsed.end;
}
