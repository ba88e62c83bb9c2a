// The message box: Enter sends, Shift+Enter adds a line, and Enter while an input method
// (Japanese, Chinese…) is composing only confirms the composition. Grows with its text.

const MAX_HEIGHT = 0.4; // of the window

export class Composer {
  /** hooks: send(text) -> bool (false: not sent, keep the text), stop() */
  constructor(form, hooks) {
    this.form = form;
    this.hooks = hooks;
    this.input = form.querySelector("#input");
    this.sendButton = form.querySelector("#send");
    this.stopButton = form.querySelector("#stop");
    this.composing = false;
    this.busy = false;
    this.input.addEventListener("compositionstart", () => (this.composing = true));
    this.input.addEventListener("compositionend", () => (this.composing = false));
    this.input.addEventListener("keydown", (event) => this.onKey(event));
    this.input.addEventListener("input", () => this.resize());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.stopButton.addEventListener("click", () => this.hooks.stop());
    this.touch = window.matchMedia("(pointer: coarse)");
    this.resize();
  }

  onKey(event) {
    if (event.key !== "Enter" || event.shiftKey || event.altKey) return;
    // keyCode 229: Safari sends the composition's confirming Enter after compositionend.
    if (event.isComposing || this.composing || event.keyCode === 229) return;
    if (this.touch.matches && !event.ctrlKey && !event.metaKey) return; // phones: Enter is a new line
    event.preventDefault();
    this.submit();
  }

  submit() {
    const text = this.input.value;
    if (!text.trim() || this.busy) return;
    if (this.hooks.send(text) === false) return;
    this.input.value = "";
    this.resize();
  }

  setBusy(busy) {
    // The button being swapped out may have the focus: keep it on the message box.
    const focused = document.activeElement;
    const refocus = focused === this.sendButton || focused === this.stopButton;
    this.busy = busy;
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    if (refocus) this.input.focus();
    this.form.classList.toggle("busy", busy);
  }

  focus() {
    this.input.focus();
  }

  resize() {
    const input = this.input;
    input.style.height = "auto";
    const limit = Math.max(120, window.innerHeight * MAX_HEIGHT);
    input.style.height = `${Math.min(input.scrollHeight + 2, limit)}px`;
  }
}
