// Link addresses and character references in model text: which addresses may become
// links (absolute http(s) and mailto only), the link element itself (new tab, no
// referrer, no follow), and HTML entities decoded to text (never to markup).

const ENTITY = /&(#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});/g;
const NAMED = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0", copy: "©" };
const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);

export function decodeEntities(text) {
  if (!text.includes("&")) return text;
  return text.replace(ENTITY, (whole, name) => {
    if (name[0] === "#") {
      const code = name[1] === "x" || name[1] === "X"
        ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10);
      if (!code || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return "\ufffd";
      return String.fromCodePoint(code);
    }
    return Object.hasOwn(NAMED, name) ? NAMED[name] : whole;
  });
}

/** An address that may become a link, or null: absolute http(s) and mailto only. */
export function safeHref(raw) {
  const text = decodeEntities(raw.replace(/\\([!-/:-@[-`{-~])/g, "$1")).trim();
  if (!text) return null;
  let url;
  try {
    url = new URL(text); // no base: relative and scheme-less addresses are refused
  } catch {
    return null;
  }
  return SAFE_PROTOCOLS.has(url.protocol) ? url.href : null;
}

export function makeLink(href, title) {
  const a = document.createElement("a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  if (title) a.title = title;
  return a;
}
