// Reachability of the gateway: when a request fails, a banner says so, /health/live is
// polled with backoff, and everyone waiting is told when the server is back.

import { api } from "./api.js";
import { t } from "./i18n.js";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export class Connection extends EventTarget {
  constructor(banner) {
    super();
    this.banner = banner;
    this.text = banner.querySelector(".banner-text");
    this.down = false;
    this.waiters = [];
    this.wake = null;
    this.hideTimer = 0;
    banner.querySelector(".banner-retry").addEventListener("click", () => this.wake?.());
    window.addEventListener("offline", () => this.lost());
    window.addEventListener("online", () => this.wake?.());
  }

  /** Something could not reach the server: resolves once it answers again. */
  lost() {
    const back = new Promise((resolve) => this.waiters.push(resolve));
    if (!this.down) {
      this.down = true;
      this.show("down", t("banner.down"));
      this.dispatchEvent(new Event("down"));
      this.poll();
    }
    return back;
  }

  async poll() {
    let delay = 400;
    for (;;) {
      await Promise.race([sleep(delay), new Promise((resolve) => (this.wake = resolve))]);
      this.wake = null;
      if (await api.live()) break;
      delay = Math.min(delay * 2, 5000);
    }
    this.down = false;
    this.show("up", t("banner.up"));
    this.hideTimer = setTimeout(() => (this.banner.hidden = true), 3000);
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
    this.dispatchEvent(new Event("up"));
  }

  show(state, text) {
    clearTimeout(this.hideTimer);
    this.banner.dataset.state = state;
    this.text.textContent = text;
    this.banner.querySelector(".banner-retry").hidden = state !== "down";
    this.banner.hidden = false;
  }
}
