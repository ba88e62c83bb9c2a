// Copy text for the user, with a fallback for pages the Clipboard API refuses (plain
// HTTP, an unfocused document), and a short "Copied" on the button that did it.

import { announce } from "./announce.js";
import { t } from "./i18n.js";

export async function copyText(text, button) {
  let ok = true;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    ok = document.execCommand("copy");
    area.remove();
  }
  announce(t(ok ? "copy.done" : "copy.failed"));
  if (button) {
    button.classList.add("copied");
    if (button.classList.contains("copy-code")) button.textContent = t(ok ? "copy.buttonDone" : "copy.buttonFailed");
    setTimeout(() => {
      button.classList.remove("copied");
      if (button.classList.contains("copy-code")) button.textContent = t("copy.button");
    }, 1500);
  }
}
