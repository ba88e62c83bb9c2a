// Light, dark or the system's choice: one button (in the sidebar's foot) cycles through
// them, its label naming the current one; the choice is kept
// in this browser (localStorage) and set on <html data-theme> as the page starts.

import { t } from "./i18n.js";

const KEY = "sluice.theme";
const ORDER = ["system", "light", "dark"];
const LABEL = { system: "theme.system", light: "theme.light", dark: "theme.dark" };

export function storedTheme() {
  try {
    const value = localStorage.getItem(KEY);
    return ORDER.includes(value) ? value : "system";
  } catch {
    return "system"; // storage refused (private mode): the system's choice
  }
}

export function applyTheme(theme) {
  const root = document.documentElement;
  if (theme === "system") delete root.dataset.theme;
  else root.dataset.theme = theme;
}

export class ThemeToggle {
  constructor(button, said) {
    this.button = button;
    this.said = said;
    this.set(storedTheme(), false);
    button.addEventListener("click", () => {
      this.set(ORDER[(ORDER.indexOf(this.theme) + 1) % ORDER.length], true);
    });
  }

  set(theme, save) {
    this.theme = theme;
    applyTheme(theme);
    this.button.dataset.theme = theme;
    const label = t(LABEL[theme]);
    this.button.querySelector(".theme-label").textContent = label;
    this.button.title = t("theme.change", { label });
    if (!save) return;
    try {
      if (theme === "system") localStorage.removeItem(KEY);
      else localStorage.setItem(KEY, theme);
    } catch {
      // not kept: this page still shows it
    }
    this.said(t(LABEL[theme]));
  }
}
