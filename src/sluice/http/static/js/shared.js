// The read-only page of a share link (/share/<token>): the conversation's questions and
// answers as its owner sees them, drawn by the chat page's own markdown renderer. No
// sign-in, no composer, no sidebar; the token in the address is the only credential, and
// the page sends no Referer anywhere (share.html's meta and the server's header).

import { copyText } from "./clipboard.js";
import { t, translate } from "./i18n.js";
import { renderMarkdown } from "./markdown.js";
import { applyTheme, storedTheme } from "./theme.js";
import { el } from "./dom.js";
import { dateTime } from "./dates.js";

const $ = (selector) => document.querySelector(selector);
const TOKEN = /^\/share\/([A-Za-z0-9_-]{16,64})\/?$/;
const CJK = /[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]/;
const OUTCOMES = {
  incomplete: ["stopped", "answer.stopped"],
  interrupted: ["interrupted", "answer.interrupted"],
  length: ["length", "answer.length"],
  content_filter: ["length", "answer.filtered"],
};

function question(message) {
  const article = el("article", "msg user");
  article.append(el("h3", "sr-only", t("shared.asked")), el("div", "msg-body bubble", message.content));
  return article;
}

function answer(message) {
  const article = el("article", "msg assistant");
  const body = el("div", "msg-body md");
  if (CJK.test(message.content)) {
    body.lang = /[\u3040-\u30ff]/.test(message.content) ? "ja"
      : /[\uac00-\ud7af]/.test(message.content) ? "ko" : "zh";
  }
  body.append(...renderMarkdown(message.content));
  body.addEventListener("click", (event) => {
    const button = event.target.closest(".copy-code");
    if (button) copyText(button.closest(".code-block").querySelector("code").textContent, button);
  });
  const foot = el("div", "msg-foot");
  if (message.model) foot.append(el("span", "model-name", message.model));
  // A failed answer keeps what it had written: marked, so it never reads as whole.
  const outcome = message.status === "failed" ? ["failed", "answer.failed"]
    : OUTCOMES[message.finish_reason];
  if (outcome) foot.append(el("span", `badge ${outcome[0]}`, t(outcome[1])));
  article.append(el("h3", "sr-only", t("msg.assistantSaid")), body, foot);
  return article;
}

function show(conversation) {
  const title = conversation.title || t("shared.untitled");
  const heading = $("#shared-title");
  delete heading.dataset.i18n; // the title now, not "Loading…"
  heading.textContent = title;
  document.title = t("shared.pageTitle", { title });
  const meta = [conversation.model, dateTime(conversation.created_at)].filter(Boolean);
  $("#shared-meta").textContent = meta.join(" · ");
  const transcript = $("#transcript");
  transcript.replaceChildren(
    ...conversation.messages.map((m) => (m.role === "user" ? question(m) : answer(m))),
  );
}

function missing() {
  document.title = t("shared.notFound");
  $(".shared-head").hidden = true;
  $("#transcript").replaceChildren();
  $("#shared-missing").hidden = false;
}

async function start() {
  applyTheme(storedTheme());
  translate();
  const match = TOKEN.exec(location.pathname);
  try {
    if (!match) {
      missing();
      return;
    }
    const response = await fetch(`/v1/shared/${match[1]}`, {
      cache: "no-store",
      credentials: "omit", // a reader is nobody: the link alone opens it
      referrerPolicy: "no-referrer",
    });
    if (response.status === 404) {
      missing();
      return;
    }
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    show(await response.json());
  } catch (error) {
    const failed = $("#shared-failed");
    failed.textContent = t("shared.failed", { error: error.message });
    failed.hidden = false;
  } finally {
    $(".shared").setAttribute("aria-busy", "false");
    document.body.dataset.state = "ready";
  }
}

start();
