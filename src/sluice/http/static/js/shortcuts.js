// Keyboard shortcuts: one table drives both the key handling and the help dialog.

import { copyText } from "./clipboard.js";
import { t } from "./i18n.js";

const $ = (selector) => document.querySelector(selector);

const MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
const MOD = MAC ? "⌘" : "Ctrl";

/** [keys shown, action or null (handled elsewhere), description (an i18n key), matcher, works while typing] */
export const SHORTCUTS = [
  [[MOD, "Shift", "O"], "newChat", "keys.newChat", (e) => mod(e) && e.shiftKey && key(e, "o"), true],
  [["Shift", "Esc"], "focusInput", "keys.focus", (e) => e.shiftKey && e.key === "Escape", true],
  [["/"], "focusInput", "keys.focusNotTyping", (e) => e.key === "/" && plain(e), false],
  [["Esc"], "stop", "keys.stop", (e) => e.key === "Escape" && plain(e), true],
  [[MOD, "Shift", "C"], "copyLast", "keys.copyLast", (e) => mod(e) && e.shiftKey && key(e, "c"), true],
  [[MOD, "K"], "search", "keys.search", (e) => mod(e) && !e.shiftKey && key(e, "k"), true],
  [[MOD, "Shift", "S"], "toggleSidebar", "keys.sidebar", (e) => mod(e) && e.shiftKey && key(e, "s"), true],
  [["?"], "help", "keys.helpNotTyping", (e) => e.key === "?" && !e.ctrlKey && !e.metaKey && !e.altKey, false],
  [[MOD, "/"], "help", "keys.help", (e) => mod(e) && e.key === "/", true],
  [["Enter"], null, "keys.send"],
  [["Shift", "Enter"], null, "keys.newline"],
  [["↑"], null, "keys.editLast"],
  [["↑ ↓"], null, "keys.move"],
  [["F2"], null, "keys.rename"],
  [["Delete"], null, "keys.delete"],
];

function mod(e) {
  return MAC ? e.metaKey && !e.ctrlKey : e.ctrlKey && !e.metaKey;
}

function key(e, letter) {
  return e.key.toLowerCase() === letter || e.code === `Key${letter.toUpperCase()}`;
}

function plain(e) {
  return !e.ctrlKey && !e.metaKey && !e.altKey && !e.shiftKey;
}

function typing(target) {
  return target instanceof HTMLElement &&
    (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

/** Call actions[name]() for matching keys; an action returning false lets the key through. */
export function bindShortcuts(actions) {
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing || event.keyCode === 229) return;
    if (document.querySelector("dialog[open]")) return; // a dialog has the keyboard
    for (const [, action, , matches, whileTyping] of SHORTCUTS) {
      if (!action || !matches(event)) continue;
      if (!whileTyping && typing(event.target)) continue;
      if (actions[action]?.(event) === false) continue;
      event.preventDefault();
      return;
    }
  });
}

/** The help dialog's table, built from SHORTCUTS. */
export function fillHelp(tbody) {
  tbody.replaceChildren();
  for (const [keys, , description] of SHORTCUTS) {
    const row = document.createElement("tr");
    const cell = document.createElement("td");
    keys.forEach((name, index) => {
      if (index) cell.append(" + ");
      const kbd = document.createElement("kbd");
      kbd.textContent = name;
      cell.appendChild(kbd);
    });
    const what = document.createElement("td");
    what.textContent = t(description);
    row.append(cell, what);
    tbody.appendChild(row);
  }
}

/** The page's shortcuts, bound to `app` (main.js): its layout, transcript and turn. */
export function bindPageShortcuts(app) {
  bindShortcuts({
    newChat: () => app.newChat(),
    focusInput: () => app.composer.focus(),
    stop: () => {
      if (app.layout.sidebarOpen()) {
        app.layout.toggleSidebar(false);
        return true;
      }
      if (!app.turn) return false;
      app.stop();
      return true;
    },
    copyLast: () => {
      const answer = app.transcript.last("assistant");
      if (!answer) return false;
      copyText(answer.text, answer.copyButton);
      return true;
    },
    search: () => {
      app.layout.toggleSidebar(true);
      $("#search").focus();
    },
    toggleSidebar: () => app.layout.toggleSidebar(),
    help: () => $("#help-dialog").showModal(),
  });
}
