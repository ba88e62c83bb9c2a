// What an answer's numbers look like: the backend's figures, "N/A" when it gave none.

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
  return `${mark}${usage.completion_tokens} out · ${mark}${usage.prompt_tokens} in`;
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
export function finalMetrics({ ttftMs, tokensPerSecond, usage }) {
  const rows = [
    ["ttft", "TTFT", ms(ttftMs), "Time to first token, measured by the gateway"],
    ["speed", "Speed", rate(tokensPerSecond, "tok/s"), "Tokens per second after the first, from the gateway"],
    ["tokens", "Tokens", tokens(usage),
      usage?.estimated ? "Estimated by the gateway (the model reported no usage)" : "Reported by the model"],
  ];
  if (usage?.cached) {
    rows.push(["cached", "Cache", "cached",
      "Served from the response cache (or shared with an identical request): no model tokens were spent"]);
  }
  return rows;
}

/**
 * Rows while the answer streams: what this browser sees, in the same units as the
 * gateway's figures that replace them at the end. A stream chunk carries about one token,
 * so counts are marked "≈". `ttftMs` undefined: not known here (the page joined mid-answer).
 */
export function liveMetrics({ ttftMs, chunks, rate: perSecond, usage }) {
  const pending = ttftMs === undefined;
  return [
    ["ttft", "TTFT", pending ? "…" : ms(ttftMs), pending
      ? "Time to first token: this page joined mid-answer; the gateway's figure comes at the end"
      : "Time to first token as seen by this browser; the gateway's figure replaces it at the end"],
    ["speed", "Speed", perSecond == null ? NA : `≈${rate(perSecond, "tok/s")}`,
      "Tokens per second arriving now (one per stream chunk, about); the gateway's figure replaces it at the end"],
    ["tokens", "Tokens", usage ? tokens(usage) : `≈${chunks} out`,
      "Tokens received so far (one per stream chunk, about); the model's count arrives at the end"],
  ];
}
