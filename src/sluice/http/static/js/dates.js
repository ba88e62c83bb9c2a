// When a conversation was last active, as the sidebar groups them: Today, Yesterday,
// Previous 7 days, Older — by this browser's calendar days, not 24-hour spans. The
// groups' ids are English; their labels and the times shown are in the page's language.

import { language, t } from "./i18n.js";

export const GROUPS = ["Today", "Yesterday", "Previous 7 days", "Older"];
export const PINNED = "Pinned";

/** A group's label in the page's language ("Today" is Intl's word for it: "今日"…). */
export function groupLabel(group) {
  if (group === GROUPS[0] || group === GROUPS[1]) {
    const words = new Intl.RelativeTimeFormat(language(), { numeric: "auto" });
    const word = words.format(group === GROUPS[0] ? 0 : -1, "day");
    return word.charAt(0).toLocaleUpperCase(language()) + word.slice(1);
  }
  if (group === GROUPS[2]) return t("group.week");
  if (group === PINNED) return t("group.pinned");
  return t("group.older");
}

/** How long ago `seconds` (epoch seconds) was, in words: "3 hours ago", "3 時間前". */
export function relativeTime(seconds, now = Date.now()) {
  const words = new Intl.RelativeTimeFormat(language(), { numeric: "auto" });
  const ago = (seconds * 1000 - now) / 1000;
  const steps = [[60, "second"], [3600, "minute"], [86400, "hour"], [604800, "day"],
    [2629800, "week"], [31557600, "month"], [Infinity, "year"]];
  let unit = 1;
  for (const [limit, name] of steps) {
    if (Math.abs(ago) < limit) return words.format(Math.round(ago / unit), name);
    unit = limit;
  }
  return "";
}

/** A date and time in the page's language, e.g. for a tooltip. */
export function dateTime(seconds) {
  return new Intl.DateTimeFormat(language(), { dateStyle: "long", timeStyle: "short" })
    .format(new Date(seconds * 1000));
}

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
