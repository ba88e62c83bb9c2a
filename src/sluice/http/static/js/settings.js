// Per-conversation settings: model (in the header), and in a dialog the system prompt,
// temperature and any other options the gateway passes to the model (as JSON). The same
// dialog holds this browser's interface language (applied at once, not per conversation).

import { setLanguage, storedLanguage, t } from "./i18n.js";

export class Settings {
  /** hooks: change(fields) with {model} or {system_prompt, options} */
  constructor(select, dialog, hooks) {
    this.select = select;
    this.dialog = dialog;
    this.hooks = hooks;
    this.form = dialog.querySelector("form");
    this.system = dialog.querySelector("#system-prompt");
    this.temperature = dialog.querySelector("#temperature");
    this.temperatureValue = dialog.querySelector("#temperature-value");
    this.defaultTemperature = dialog.querySelector("#temperature-default");
    this.options = dialog.querySelector("#options-json");
    this.error = dialog.querySelector(".options-error");
    this.current = { model: null, system_prompt: null, options: {} };
    this.providers = new Map(); // model id -> provider ("sim": the built-in simulated model)
    this.defaultModel = null;
    this.simBadge = document.querySelector("#sim-badge");
    this.models = null;
    this.language = dialog.querySelector("#language");
    this.language.value = storedLanguage();
    this.language.addEventListener("change", () => setLanguage(this.language.value));
    select.addEventListener("change", () => {
      this.current.model = select.value || null;
      this.markSimulated();
      this.hooks.change({ model: this.current.model });
    });
    this.temperature.addEventListener("input", () => {
      this.defaultTemperature.checked = false;
      this.showTemperature();
    });
    this.defaultTemperature.addEventListener("change", () => this.showTemperature());
    this.form.addEventListener("submit", (event) => {
      if (event.submitter?.value !== "save") return;
      if (!this.save()) event.preventDefault();
    });
  }

  /** Whether `model` is one of sluice's simulated models (its provider is "sim"). */
  simulated(model) {
    return this.providers.get(model || this.defaultModel) === "sim";
  }

  /** `model`'s price per million tokens ({input, output}), or null. */
  price(model) {
    return this.pricing?.get(model || this.defaultModel) || null;
  }

  /** The model a turn without one gets (the effective one shown in the header). */
  effectiveModel() {
    return this.current.model || this.defaultModel;
  }

  markSimulated() {
    if (this.simBadge) this.simBadge.hidden = !this.simulated(this.effectiveModel());
  }

  setModels(models) {
    const value = this.select.value;
    this.models = models;
    this.providers = new Map(models.map((m) => [m.id, m.owned_by]));
    this.pricing = new Map(models.filter((m) => m.pricing).map((m) => [m.id, m.pricing]));
    // The gateway's default is its first model, unless it marks another.
    this.defaultModel = (models.find((m) => m.default) || models[0])?.id || null;
    this.select.replaceChildren();
    const fallback = document.createElement("option");
    fallback.value = "";
    fallback.textContent = this.defaultModel
      ? t("model.defaultNamed", { model: this.defaultModel }) : t("model.default");
    this.select.appendChild(fallback);
    for (const model of models) {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = model.id;
      this.select.appendChild(option);
    }
    this.select.value = value;
    this.show(this.current);
  }

  /** Show a conversation's (or a new chat's) settings. */
  show(settings) {
    this.current = {
      model: settings.model || null,
      system_prompt: settings.system_prompt || null,
      options: { ...(settings.options || {}) },
    };
    const model = this.current.model || "";
    if (model && ![...this.select.options].some((o) => o.value === model)) {
      const option = document.createElement("option");
      option.value = model;
      option.textContent = t("model.unavailable", { model });
      this.select.appendChild(option);
    }
    this.select.value = model;
    this.markSimulated();
    const customised = this.current.system_prompt || Object.keys(this.current.options).length;
    document.querySelector("#settings-button")?.classList.toggle("customised", Boolean(customised));
  }

  open() {
    const { temperature, ...rest } = this.current.options;
    this.system.value = this.current.system_prompt || "";
    const known = typeof temperature === "number";
    this.defaultTemperature.checked = !known;
    this.temperature.value = known ? String(temperature) : "1";
    this.options.value = Object.keys(rest).length ? JSON.stringify(rest, null, 2) : "";
    this.options.closest("details").open = Boolean(this.options.value);
    this.error.hidden = true;
    this.language.value = storedLanguage();
    this.showTemperature();
    this.dialog.showModal();
    this.system.focus();
  }

  showTemperature() {
    this.temperatureValue.textContent = this.defaultTemperature.checked
      ? t("settings.modelDefault") : Number(this.temperature.value).toFixed(1);
  }

  save() {
    let options = {};
    const raw = this.options.value.trim();
    if (raw) {
      try {
        options = JSON.parse(raw);
      } catch (error) {
        this.showError(t("settings.badJson", { error: error.message }));
        return false;
      }
      if (!options || typeof options !== "object" || Array.isArray(options)) {
        this.showError(t("settings.notObject"));
        return false;
      }
    }
    delete options.temperature;
    if (!this.defaultTemperature.checked) options.temperature = Number(this.temperature.value);
    const fields = { system_prompt: this.system.value.trim() || null, options };
    this.current = { ...this.current, ...fields };
    this.show(this.current);
    this.hooks.change(fields);
    return true;
  }

  /** The interface language changed: redraw the words this panel made. */
  relabel() {
    if (this.models) this.setModels(this.models);
    else this.show(this.current);
    this.showTemperature();
  }

  showError(text) {
    this.error.textContent = text;
    this.error.hidden = false;
    this.options.focus();
  }
}
