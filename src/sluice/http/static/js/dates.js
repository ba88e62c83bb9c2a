// When a conversation was last active, as the sidebar groups them: Today, Yesterday,
// Previous 7 days, Older — by this browser's calendar days, not 24-hour spans.

export const GROUPS = ["Today", "Yesterday", "Previous 7 days", "Older"];

/** The group of a time `seconds` (epoch seconds), seen at `now` (a Date). */
export function dateGroup(seconds, now = new Date()) {
  const today = new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime();
  const at = seconds * 1000;
  if (at >= today) return GROUPS[0];
  // Calendar days: a day is not always 24 hours (daylight saving), so step by dates.
  const daysAgo = (n) => new Date(now.getFullYear(), now.getMonth(), now.getDate() - n).getTime();
  if (at >= daysAgo(1)) return GROUPS[1];
  if (at >= daysAgo(7)) return GROUPS[2];
  return GROUPS[3];
}

/** `text` as nodes, every case-insensitive occurrence of `query` in a <mark>. */
export function highlighted(text, query) {
  const nodes = [];
  const folded = text.toLowerCase();
  const needle = query.toLowerCase();
  let from = 0;
  // Lower-casing can change a string's length (rare letters): then no marks, plain text.
  if (needle && folded.length === text.length) {
    for (let at = folded.indexOf(needle); at !== -1; at = folded.indexOf(needle, from)) {
      if (at > from) nodes.push(document.createTextNode(text.slice(from, at)));
      const mark = document.createElement("mark");
      mark.textContent = text.slice(at, at + needle.length);
      nodes.push(mark);
      from = at + needle.length;
    }
  }
  if (from < text.length) nodes.push(document.createTextNode(text.slice(from)));
  return nodes;
}
