// Status changes for screen readers, said once each ("Generating", "Done", "Stopped"),
// through one polite live region; never per token.

let region = null;
let timer = 0;

export function setRegion(node) {
  region = node;
}

export function announce(text) {
  if (!region) return;
  clearTimeout(timer);
  region.textContent = "";
  // A fresh text node after a pause makes repeated messages ("Done", "Done") be heard.
  timer = setTimeout(() => (region.textContent = text), 60);
}
