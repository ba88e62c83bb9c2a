// What an answer's numbers look like: the backend's figures, "N/A" when it gave none.

import { t } from "./i18n.js";

const NA = "N/A";

function ms(value) {
  if (value === null || value === undefined || !Number.isFinite(value)) return NA;
  return value >= 10000 ? `${(value / 1000).toFixed(1)} s` : `${Math.round(value)} ms`;
}

function rate(value, unit) {
  if (value === null || value === undefined || !Number.isFinite(value)) return NA;
  return `${value >= 100 ? Math.round(value) : value.toFixed(1)} ${unit}`;
}

function tokens(usage) {
  if (!usage) return NA;
  const mark = usage.estimated ? "≈" : "";
  return t("metric.inOut", { out: `${mark}${usage.completion_tokens}`, in: `${mark}${usage.prompt_tokens}` });
}

/** Tokens per second from a stored message, by the same formula as the server's done. */
export function storedRate(message) {
  const { usage, duration_ms: duration, ttft_ms: ttft } = message;
  if (!usage || duration == null || ttft == null) return null;
  const streaming = (duration - ttft) / 1000;
  if (streaming <= 0 || usage.completion_tokens <= 1) return null;
  return (usage.completion_tokens - 1) / streaming;
}

/** [key, label, value, title] rows for a finished answer. */
export function finalMetrics({ ttftMs, tokensPerSecond, usage, price }) {
  const rows = [
    ["ttft", "TTFT", ms(ttftMs), t("metric.ttftTitle")],
    ["speed", t("metric.speed"), rate(tokensPerSecond, "tok/s"), t("metric.speedTitle")],
    ["tokens", t("metric.tokens"), tokens(usage),
      t(usage?.estimated ? "metric.estimatedTitle" : "metric.reportedTitle")],
  ];
  if (usage && price) {
    // A cached answer spent no upstream tokens: it cost nothing.
    const cost = usage.cached ? 0
      : (usage.prompt_tokens * price.input + usage.completion_tokens * price.output) / 1e6;
    rows.push(["cost", t("metric.cost"), money(cost), t("metric.costTitle")]);
  }
  if (usage?.cached) {
    rows.push(["cached", t("metric.cache"), t("metric.cached"), t("metric.cachedTitle")]);
  }
  return rows;
}

/** A cost in the configured currency units: enough digits to see a fraction of a cent. */
function money(value) {
  if (value === 0) return "0";
  return value >= 1 ? value.toFixed(2) : value.toPrecision(2);
}

/** The row for what the signed-in key's budget has left (`/v1/session`'s key.budget). */
export function budgetRow(budget) {
  return ["budget", t("metric.budget"),
    t(budget.period === "month" ? "metric.leftMonth" : "metric.leftDay",
      { tokens: budget.remaining_tokens.toLocaleString() }),
    t("metric.budgetTitle", { tokens: budget.tokens.toLocaleString() })];
}

/**
 * Rows while the answer streams: what this browser sees, in the same units as the
 * gateway's figures that replace them at the end. A stream chunk carries about one token,
 * so counts are marked "≈". `ttftMs` undefined: not known here (the page joined mid-answer).
 */
export function liveMetrics({ ttftMs, chunks, rate: perSecond, usage }) {
  const pending = ttftMs === undefined;
  return [
    ["ttft", "TTFT", pending ? "…" : ms(ttftMs),
      t(pending ? "metric.ttftPendingTitle" : "metric.ttftLiveTitle")],
    ["speed", t("metric.speed"), perSecond == null ? NA : `≈${rate(perSecond, "tok/s")}`,
      t("metric.speedLiveTitle")],
    ["tokens", t("metric.tokens"), usage ? tokens(usage) : t("metric.out", { out: `≈${chunks}` }),
      t("metric.tokensLiveTitle")],
  ];
}
