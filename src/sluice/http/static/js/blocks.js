// Splitting markdown into top-level blocks, incrementally: which blocks are finished
// (nothing that arrives later can change them) and which are still open.
// Pure: strings in, plain objects out. Rules follow CommonMark where it matters for
// model output (https://spec.commonmark.org/0.31.2/#blocks-and-inlines), loosely elsewhere.

export const FENCE_OPEN = /^ {0,3}(`{3,}|~{3,})(.*)$/;
export const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+|$)/;
export const HR = /^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$/;
export const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:[ \t]+|$)/;
export const QUOTE = /^ {0,3}>/;
export const TABLE_SEP = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/;

const BLANK = /^[ \t]*$/;

/** Lines of `text` from `pos`: {start, end (before the newline), next, complete}. */
export function splitLines(text, pos) {
  const lines = [];
  while (pos <= text.length) {
    const nl = text.indexOf("\n", pos);
    if (nl === -1) {
      lines.push({ start: pos, end: text.length, next: text.length, complete: false });
      break;
    }
    lines.push({ start: pos, end: nl, next: nl + 1, complete: true });
    pos = nl + 1;
  }
  return lines;
}

function isFenceClose(line, char, length) {
  const m = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(line);
  return m !== null && m[1][0] === char && m[1].length >= length;
}

function indentOf(line) {
  let n = 0;
  for (const c of line) {
    if (c === " ") n += 1;
    else if (c === "\t") n += 4 - (n % 4);
    else break;
  }
  return n;
}

const PARTIAL_ITEM = /^ {0,3}(?:\d{1,9}[.)]?|[-*+])?$/;

function tableComing(lines, i, lineAt) {
  if (i === lines.length - 1) return true;
  return i === lines.length - 2 && !lines[i + 1].complete && /^[ \t]*\|?[ \t:|-]*$/.test(lineAt(i + 1));
}

function startsTable(lines, i, lineAt) {
  return i + 1 < lines.length && lineAt(i).includes("|") && TABLE_SEP.test(lineAt(i + 1)) &&
    lineAt(i + 1).includes("-");
}

/**
 * The blocks of `text` from offset `pos` (a line start). `final` means no more text will
 * arrive. Each block: {kind, start, end, closed, ...}; kind is fence, heading, hr, list,
 * quote, table or para. A block is closed when no later text can change how it renders.
 */
export function scanBlocks(text, pos, final) {
  const lines = splitLines(text, pos);
  const lineAt = (i) => text.slice(lines[i].start, lines[i].end);
  const blocks = [];
  let i = 0;
  while (i < lines.length) {
    const line = lineAt(i);
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    const start = lines[i].start;
    const fence = FENCE_OPEN.exec(line);
    if (fence && !(fence[1][0] === "`" && fence[2].includes("`"))) {
      const char = fence[1][0];
      const length = fence[1].length;
      let close = -1;
      for (let j = i + 1; j < lines.length; j++) {
        if ((lines[j].complete || final) && isFenceClose(lineAt(j), char, length)) {
          close = j;
          break;
        }
      }
      const info = fence[2].trim().split(/\s+/)[0] || "";
      if (close >= 0) {
        blocks.push({
          kind: "fence", start, end: lines[close].next, closed: true, info,
          body: text.slice(lines[i].next, lines[close].start),
        });
        i = close + 1;
      } else {
        blocks.push({
          kind: "fence", start, end: text.length, closed: final, info,
          body: lines[i].complete ? text.slice(lines[i].next) : "",
          infoComplete: lines[i].complete,
        });
        i = lines.length;
      }
      continue;
    }
    if (HEADING.test(line)) {
      blocks.push({
        kind: "heading", start, end: lines[i].next, closed: lines[i].complete || final,
        line,
      });
      i += 1;
      continue;
    }
    if (HR.test(line)) {
      blocks.push({ kind: "hr", start, end: lines[i].next, closed: lines[i].complete || final });
      i += 1;
      continue;
    }
    let kind = "para";
    if (LIST_ITEM.test(line)) kind = "list";
    else if (QUOTE.test(line)) kind = "quote";
    else if (startsTable(lines, i, lineAt)) kind = "table";
    else if (!final && line.trimStart().startsWith("|") && tableComing(lines, i, lineAt)) {
      kind = "table"; // its separator row is still being written
    }
    let j = i + 1;
    let closed = null;
    while (j < lines.length) {
      const next = lineAt(j);
      if (BLANK.test(next)) {
        if (!lines[j].complete) break; // the next line has only just begun
        if (kind !== "list") {
          closed = true;
          break;
        }
        // A list goes on after blank lines when an item or an indented line follows.
        let k = j + 1;
        while (k < lines.length && BLANK.test(lineAt(k)) && lines[k].complete) k += 1;
        if (k >= lines.length || (!lines[k].complete && BLANK.test(lineAt(k)))) {
          closed = final;
          break;
        }
        const after = lineAt(k);
        if (LIST_ITEM.test(after) || indentOf(after) >= 2) {
          j = k;
          continue;
        }
        // "1" may yet become "1. next item": undecided until the line is.
        closed = lines[k].complete || final || !PARTIAL_ITEM.test(after);
        break;
      }
      const indented = indentOf(next) >= 2;
      if (kind === "list" && indented) {
        j += 1;
        continue;
      }
      const interrupts =
        (FENCE_OPEN.test(next) && kind !== "table") ||
        HEADING.test(next) ||
        (HR.test(next) && lines[j].complete) ||
        (kind === "para" && (/^ {0,3}(?:[-*+]|1[.)])[ \t]+\S/.test(next) || QUOTE.test(next))) ||
        (kind !== "table" && startsTable(lines, j, lineAt)) ||
        (kind === "table" && !next.includes("|")) ||
        (kind === "quote" && !QUOTE.test(next));
      if (interrupts) {
        // An interrupting line still being written may yet turn out to be plain text.
        closed = lines[j].complete || final;
        break;
      }
      j += 1;
    }
    if (closed === null) closed = final;
    blocks.push({ kind, start, end: j < lines.length ? lines[j].start : text.length, closed });
    i = j;
  }
  return blocks;
}
