// The gateway's HTTP API: JSON calls, and chat streams read as Server-Sent Events with
// fetch() (EventSource cannot POST). Knows nothing about the page.

import { SSEParser } from "./sse.js";

/** An HTTP error answer: {error: {message, type, param, code}}. */
export class ApiError extends Error {
  constructor(status, body, retryAfter = null) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.type = error.type || null;
    this.code = error.code || null;
    this.param = error.param || null;
    this.retryAfter = retryAfter; // seconds, from Retry-After (429, 503)
  }
}

/** The server could not be reached (or the connection broke). */
export class NetworkError extends Error {}

// Signed in by session cookie (HttpOnly, set by POST /v1/session), requests that change
// something carry the session's CSRF token.
const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
let csrf = null;
let askForKey = null;

/** `ask()` resolves true once the user signed in (the gateway answered 401). */
export function onUnauthorized(ask) {
  askForKey = ask;
}

export function setCsrf(token) {
  csrf = token || null;
}

async function call(method, path, { body, signal, extra } = {}) {
  let csrfRetried = false;
  for (;;) {
    const headers = { ...extra };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (csrf && !SAFE.has(method)) headers["X-CSRF-Token"] = csrf;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        // Reads must never come from the browser's cache. A POST never does anyway, and
        // "no-store" would make the browser send `Cache-Control: no-cache`, which the
        // gateway reads as "refresh the response cache".
        cache: SAFE.has(method) ? "no-store" : "default",
        credentials: "same-origin",
      });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new NetworkError(error.message || "network error");
    }
    if (response.status === 401 && askForKey) {
      await response.body?.cancel();
      if (await askForKey()) continue;
    } else if (response.status === 403 && !SAFE.has(method) && !csrfRetried) {
      // Signed in again elsewhere (another tab): this page's CSRF token is stale.
      const error = await response.clone().json().catch(() => null);
      if (error?.error?.code === "csrf_failed") {
        csrfRetried = true;
        const state = await fetch("/v1/session", { cache: "no-store" }).then((r) => r.json());
        setCsrf(state.csrf_token);
        continue;
      }
    }
    return response;
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const ms = Number(response.headers.get("retry-after-ms"));
  const seconds = Number(response.headers.get("retry-after"));
  const retryAfter = ms > 0 ? ms / 1000 : seconds > 0 ? seconds : null;
  return new ApiError(response.status, body, retryAfter);
}

async function json(method, path, body) {
  const response = await call(method, path, { body });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

/**
 * A chat stream's events, in batches (one per network read): [{type, ...frame, seq}].
 * Ends when the body ends; throws NetworkError if the connection breaks.
 */
export async function* readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SSEParser();
  try {
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        if (error.name === "AbortError") throw error;
        throw new NetworkError(error.message || "the stream broke");
      }
      if (chunk.done) break;
      const batch = [];
      for (const event of parser.feed(decoder.decode(chunk.value, { stream: true }))) {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          continue;
        }
        if (!frame || typeof frame !== "object") continue;
        frame.seq = event.id ? Number(event.id) : null;
        batch.push(frame);
      }
      if (batch.length) yield batch;
    }
  } finally {
    reader.releaseLock();
  }
}

async function stream(method, path, { body, signal } = {}) {
  const extra = { Accept: "text/event-stream" };
  const response = await call(method, path, { body, signal, extra });
  if (!response.ok) throw await errorOf(response);
  return response;
}

export const api = {
  models: () => json("GET", "/v1/models"),
  conversations: (q = "", limit = 100, offset = 0) =>
    json("GET", `/v1/conversations?limit=${limit}&offset=${offset}` +
      (q ? `&q=${encodeURIComponent(q)}` : "")),
  conversation: (id) => json("GET", `/v1/conversations/${encodeURIComponent(id)}`),
  createConversation: (fields) => json("POST", "/v1/conversations", fields),
  updateConversation: (id, changes) =>
    json("PATCH", `/v1/conversations/${encodeURIComponent(id)}`, changes),
  deleteConversation: (id) => json("DELETE", `/v1/conversations/${encodeURIComponent(id)}`),
  /** Read-only share links: {id, url, token, ...} (the token only here), list, revoke. */
  createShare: (id) => json("POST", `/v1/conversations/${encodeURIComponent(id)}/shares`),
  shares: (id) => json("GET", `/v1/conversations/${encodeURIComponent(id)}/shares`),
  revokeShare: (id, shareId) => json("DELETE",
    `/v1/conversations/${encodeURIComponent(id)}/shares/${encodeURIComponent(shareId)}`),
  /** POST /chat: a turn's SSE response (HTTP errors before the stream throw ApiError). */
  chat: (body, signal) => stream("POST", "/chat", { body, signal }),
  /** The rest of a stream after event `after`: start, the missed events, done. */
  resume: (streamId, after, signal) =>
    stream("GET", `/v1/streams/${encodeURIComponent(streamId)}?after=${after}`, { signal }),
  cancel: (streamId) => json("POST", `/v1/streams/${encodeURIComponent(streamId)}/cancel`),
  /** {auth_required, signed_in, csrf_token} */
  session: () => json("GET", "/v1/session"),
  /** Exchange a key for a session cookie; an unknown key is an ApiError 401 (no prompt). */
  async signIn(key) {
    let response;
    try {
      response = await fetch("/v1/session", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key }),
        cache: "no-store",
      });
    } catch (error) {
      throw new NetworkError(error.message || "network error");
    }
    if (!response.ok) throw await errorOf(response);
    return response.json();
  },
  signOut: () => json("DELETE", "/v1/session"),
  /** Whether the gateway answers at all. */
  async live() {
    try {
      const response = await fetch("/health/live", { cache: "no-store" });
      return response.status < 500 || response.status === 503;
    } catch {
      return false;
    }
  },
};
