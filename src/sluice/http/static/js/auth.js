// Signing in when the gateway requires it: the page asks for an API key once, exchanges it
// for a session (an HttpOnly cookie the page never sees, plus a CSRF token it echoes), and
// asks again only if the session ends. The key itself is not kept anywhere.

import { ApiError, NetworkError, api, onUnauthorized, setCsrf } from "./api.js";
import { t } from "./i18n.js";

export class Auth {
  constructor(dialog, signOutButton) {
    this.dialog = dialog;
    this.form = dialog.querySelector("form");
    this.input = dialog.querySelector("#api-key");
    this.error = dialog.querySelector(".key-error");
    this.signOutButton = signOutButton;
    this.required = false;
    this.pending = null;
    this.resolve = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    dialog.addEventListener("close", () => {
      this.resolve?.(dialog.returnValue === "ok");
      this.resolve = null;
      this.pending = null;
    });
    signOutButton.addEventListener("click", () => this.signOut());
    onUnauthorized(() => this.ask());
  }

  /** Learn whether the gateway wants a key; ask for one now if so and not signed in. */
  async start() {
    let state;
    try {
      state = await api.session();
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return; // a gateway without sessions
      throw error;
    }
    this.apply(state);
    if (state.auth_required && !state.signed_in) await this.ask();
  }

  apply(state) {
    this.required = Boolean(state.auth_required);
    setCsrf(state.csrf_token);
    this.signOutButton.hidden = !(state.auth_required && state.signed_in);
  }

  /** Show the sign-in dialog (once, however many requests were refused). */
  ask() {
    if (this.pending) return this.pending;
    setCsrf(null);
    this.showError(null);
    this.pending = new Promise((resolve) => (this.resolve = resolve));
    this.dialog.returnValue = "";
    this.dialog.showModal();
    this.input.focus();
    return this.pending;
  }

  async submit() {
    const key = this.input.value.trim();
    if (!key) return;
    const button = this.form.querySelector("button.primary");
    button.disabled = true;
    try {
      const state = await api.signIn(key);
      this.apply({ auth_required: true, signed_in: true, csrf_token: state.csrf_token });
      this.input.value = "";
      this.dialog.close("ok");
    } catch (error) {
      this.showError(
        error instanceof NetworkError ? t("auth.unreachable")
          : error.status === 401 ? t("auth.refused") : error.message,
      );
      this.input.select();
    } finally {
      button.disabled = false;
    }
  }

  showError(text) {
    this.error.hidden = !text;
    this.error.textContent = text || "";
  }

  async signOut() {
    try {
      await api.signOut();
    } finally {
      location.reload();
    }
  }
}
