// The chat page: wires the parts together and owns the flows — send, stop, regenerate,
// open/resume a conversation, shortcuts; regenerate, edit, continue and retry are
// rework.js's. Managing conversations
// (settings, rename, delete) is manage.js's; versions, branches.js's; export, export.js's;
// share links, share.js's.

import { announce, setRegion } from "./announce.js";
import { ApiError, NetworkError, api } from "./api.js";
import { Attachments, showFiles } from "./attachments.js";
import { Auth } from "./auth.js";
import { switchVersion } from "./branches.js";
import { copyText } from "./clipboard.js";
import { Composer } from "./composer.js";
import { Connection } from "./connection.js";
import { ExportMenu } from "./export.js";
import { Follower } from "./follow.js";
import { t, translate } from "./i18n.js";
import { Layout } from "./layout.js";
import { continueAnswer, edit, regenerate, retry } from "./rework.js";
import { changeSettings, pin, removeConversation, rename } from "./manage.js";
import { Settings } from "./settings.js";
import { ShareDialog } from "./share.js";
import { bindPageShortcuts, fillHelp } from "./shortcuts.js";
import { Sidebar } from "./sidebar.js";
import { ThemeToggle } from "./theme.js";
import { Transcript } from "./transcript.js";
import { Turn } from "./turn.js";
import { UnsentQuestions } from "./unsent.js";

const $ = (selector) => document.querySelector(selector);

class App {
  constructor() {
    this.conversation = null; // {id, title, model, system_prompt, options}
    this.draft = { model: null, system_prompt: null, options: {} }; // a new chat's settings
    this.turn = null;
    this.loading = 0;
    this.endedStreams = new Set(); // streams this page followed to their end
    translate(); // index.html's words, in the page's language
    setRegion($("#status"));
    this.auth = new Auth($("#key-dialog"), $("#sign-out"));
    this.connection = new Connection($("#banner"));
    this.connection.addEventListener("up", () => this.sidebar.refresh());
    this.follower = new Follower($("#scroller"), $("#jump"));
    this.transcript = new Transcript($("#transcript"), {
      version: (view, delta) => switchVersion(this, view, delta),
      edit: (view, text) => this.edit(view, text),
      regenerate: (view) => this.regenerate(view),
      continue: (view) => this.continueAnswer(view),
      retry: (view) => this.retry(view),
      editUnsent: (view) => this.transcript.questionOf(view)?.startEdit(),
      simulated: (model) => this.settings.simulated(model),
      price: (model) => this.settings.price(model),
      copy: copyText,
    });
    this.unsent = new UnsentQuestions(this.transcript, (text) => this.bodyFor(text));
    this.attachments = new Attachments($("#composer"), announce);
    this.composer = new Composer($("#composer"), {
      send: (text) => this.send(text),
      stop: () => this.stop(),
    });
    $("#input").addEventListener("keydown", (event) => {
      if (event.key === "ArrowUp" && !event.target.value && !this.turn) {
        const question = this.transcript.last("user");
        if (question) {
          event.preventDefault();
          question.startEdit();
        }
      }
    });
    this.sidebar = new Sidebar($("#sidebar"), {
      list: async (q, limit, offset) => {
        try {
          return (await api.conversations(q, limit, offset)).data;
        } catch (error) {
          if (error instanceof NetworkError) this.connection.lost(); // "up" lists again
          throw error;
        }
      },
      rename: (id, title) => rename(this, id, title),
      remove: (conversation) => removeConversation(this, conversation),
      pin: (conversation, on) => pin(this, conversation, on),
    });
    this.settings = new Settings($("#model"), $("#settings-dialog"), {
      change: (fields) => changeSettings(this, fields),
    });
    this.exportMenu = new ExportMenu($("#export-button"), $("#export-menu"), {
      current: () => this.conversation?.id ?? null,
      load: (id) => api.conversation(id),
      said: announce,
    });
    // Opened from the header's button, or (on a phone, where the header has no room for
    // it) from the conversation's menu.
    const shareOpeners = [$("#share-button"), $("#export-menu .menu-share")];
    this.shareDialog = new ShareDialog($("#share-dialog"), shareOpeners, {
      current: () => this.conversation?.id ?? null,
      before: () => this.exportMenu.toggle(false),
      copy: copyText,
      said: announce,
    });
    this.theme = new ThemeToggle($("#theme-button"), announce);
    fillHelp($("#help-table tbody"));
    this.layout = new Layout();
    $("#new-chat").addEventListener("click", () => this.newChat());
    $("#settings-button").addEventListener("click", () => this.settings.open());
    $("#help-button").addEventListener("click", () => $("#help-dialog").showModal());
    bindPageShortcuts(this);
    window.addEventListener("hashchange", () => this.route());
    window.addEventListener("sluice:language", () => this.relabel());
  }

  /** The interface language changed (index.html's words already are): redraw the rest. */
  relabel() {
    this.theme.set(this.theme.theme, false);
    this.settings.relabel();
    fillHelp($("#help-table tbody"));
    this.setTitle(this.conversation?.title);
    this.sidebar.refresh();
    // The messages' buttons and labels: drawn again from the server's copy, unless an
    // answer is streaming into them now (its own words change with the next one).
    if (this.conversation && !this.turn) this.open(this.conversation.id);
  }

  async start() {
    this.layout.start();
    for (;;) {
      try {
        await this.auth.start();
        break;
      } catch (error) {
        if (!(error instanceof NetworkError)) throw error;
        await this.connection.lost();
      }
    }
    this.route();
    this.sidebar.refresh();
    try {
      this.settings.setModels((await api.models()).data);
      for (const view of this.transcript.views) view.showModel?.();
    } catch (error) {
      if (error instanceof NetworkError) this.connection.lost();
    }
  }

  // --- routing: #/c/<id> is a conversation, anything else a new chat ---

  route() {
    const match = /^#\/c\/([^/]+)$/.exec(location.hash);
    const id = match ? decodeURIComponent(match[1]) : null;
    if (id && this.conversation?.id === id) return;
    if (id) this.open(id);
    else this.newChat(false);
  }

  setHash(id) {
    const hash = id ? `#/c/${encodeURIComponent(id)}` : "#/";
    if (location.hash !== hash) history.pushState(null, "", hash);
  }

  setTitle(title) {
    $("#chat-title").textContent = title || t("app.newChat");
    $("#export-button").hidden = !this.conversation;
    $("#share-button").hidden = !this.conversation;
    document.title = title ? `${title} · sluice` : "sluice";
  }

  newChat(updateHash = true) {
    this.loading += 1;
    this.detach();
    this.conversation = null;
    this.transcript.clear();
    this.setTitle(null);
    this.settings.show(this.draft);
    this.sidebar.setActive(null);
    if (updateHash) this.setHash(null);
    this.unsent.show(null, []);
    this.composer.focus();
  }

  async open(id) {
    const token = ++this.loading;
    this.detach();
    let conversation;
    for (;;) {
      try {
        conversation = await api.conversation(id);
        break;
      } catch (error) {
        if (token !== this.loading) return;
        if (error instanceof NetworkError) {
          await this.connection.lost();
          continue;
        }
        announce(error instanceof ApiError && error.status === 404
          ? t("open.gone") : t("open.failed", { error: error.message }));
        this.newChat();
        return;
      }
    }
    if (token !== this.loading) return;
    this.show(conversation);
    this.transcript.clear();
    this.transcript.sync(conversation.messages);
    this.unsent.show(id, conversation.messages);
    this.follower.toBottom();
    this.resumeIfStreaming(conversation.messages);
  }

  /** The body that sends `text` now: into the open conversation, or a new one. */
  bodyFor(text) {
    if (this.conversation) return { conversation_id: this.conversation.id, message: text };
    const body = { message: text };
    if (this.draft.model) body.model = this.draft.model;
    if (this.draft.system_prompt) body.system = this.draft.system_prompt;
    if (Object.keys(this.draft.options).length) body.options = this.draft.options;
    return body;
  }

  show(conversation) {
    const { messages, ...fields } = conversation;
    this.conversation = fields;
    this.setTitle(fields.title);
    this.settings.show(fields);
    this.sidebar.setActive(fields.id);
  }

  /** The last answer is still being generated (a reload, another tab): follow it. */
  resumeIfStreaming(messages) {
    const last = messages[messages.length - 1];
    if (!last || last.role !== "assistant" || last.status !== "streaming" || !last.stream_id) return;
    const view = this.transcript.last("assistant");
    this.run(view, (turn) => turn.resume(last.stream_id, last.content));
  }

  // --- turns ---

  /** Run a Turn drawing into `view`; `begin(turn)` sends or resumes it. */
  run(view, begin) {
    const turn = new Turn(view, this.connection, {
      start: (frame) => this.started(frame),
      frame: () => this.follower.stick(),
      state: (state) => this.turnState(state, turn),
      end: () => this.ended(turn),
    });
    this.turn = turn;
    this.composer.setBusy(true);
    this.transcript.root.setAttribute("aria-busy", "true");
    this.transcript.update();
    begin(turn);
    return turn;
  }

  async started(frame) {
    const id = frame.conversation_id;
    if (!id) return;
    if (this.conversation?.id !== id) {
      this.conversation = { id, ...this.draft, title: "" };
      this.setHash(id);
      this.sidebar.setActive(id);
      this.draft = { model: null, system_prompt: null, options: {} };
    }
    // The server titles a new conversation from its first question.
    const listed = (await this.sidebar.refresh())?.find((c) => c.id === id);
    if (listed && this.conversation?.id === id && !this.conversation.title) {
      this.conversation.title = listed.title;
      this.setTitle(listed.title);
    }
  }

  turnState(state, turn) {
    const said = {
      thinking: t("state.generating"),
      streaming: turn.announced ? null : t("state.generating"),
      done: t("state.done"),
      stopped: t("state.stopped"),
      failed: t("state.failed", { error: turn.error?.message || t("answer.failedText") }),
    }[state];
    if (state === "thinking" || state === "streaming") turn.announced = true;
    if (said) announce(said);
  }

  ended(turn) {
    if (turn.streamId) this.endedStreams.add(turn.streamId);
    if (this.turn === turn) this.turn = null;
    this.composer.setBusy(false);
    this.transcript.root.setAttribute("aria-busy", "false");
    if (!turn.detached && turn.error?.resend && !turn.conversationId) this.unsent.keep(turn);
    this.follower.stick();
    this.transcript.update();
    if (turn.detached || !this.conversation) return;
    if (turn.error?.resend && !turn.conversationId) {
      // The request itself failed: once the server answers again, see what it kept.
      if (this.connection.down) this.connection.lost().then(() => this.refresh());
      return;
    }
    if (turn.conversationId !== this.conversation.id) return;
    this.refresh().then(() => this.showBudget());
  }

  /** Under the latest answer, what the signed-in key's budget has left. Usage is
   * recorded within a second or so of an answer's end: asked again after that. */
  async showBudget(again = true) {
    if (!this.auth.required) return;
    let budget = null;
    try {
      budget = (await api.session()).key?.budget || null;
    } catch {
      return; // the figure is a courtesy: no error for it
    }
    this.transcript.last("assistant")?.showBudget?.(budget);
    if (budget && again) setTimeout(() => this.showBudget(false), 1500);
  }

  /** Read the conversation again: ids, versions, title; nothing on screen is redrawn. */
  async refresh() {
    const token = this.loading;
    const id = this.conversation?.id;
    if (!id) return;
    try {
      const conversation = await api.conversation(id);
      if (token !== this.loading || this.turn) return;
      this.show(conversation);
      // A question that did reach the server before the connection broke is stored.
      this.unsent.reconcile(id, conversation.messages);
      this.transcript.sync(conversation.messages);
      this.follower.stick();
      // Not the answer just followed to its end: the server may not have saved it yet.
      const last = conversation.messages[conversation.messages.length - 1];
      if (!this.endedStreams.has(last?.stream_id)) this.resumeIfStreaming(conversation.messages);
    } catch (error) {
      if (error instanceof NetworkError) this.connection.lost();
    }
    this.sidebar.refresh();
  }

  detach() {
    if (this.turn) {
      this.turn.detach();
      this.turn = null;
      this.composer.setBusy(false);
      this.transcript.root.setAttribute("aria-busy", "false");
    }
  }

  send(text) {
    if (this.turn) return false;
    const body = this.bodyFor(text);
    const files = this.attachments.take();
    if (files.length) {
      body.attachments = files.map(({ name, media_type, data }) => ({ name, media_type, data }));
    }
    // A question still waiting to be sent gives way to this one (one kept per conversation).
    this.unsent.clear(this.conversation?.id || null);
    const question = this.transcript.question(text);
    question.after = this.transcript.views.at(-2)?.id ?? null;
    showFiles(question, files);
    this.sendTurn(body);
    return true;
  }

  sendTurn(body) {
    const view = this.transcript.answer();
    view.retryBody = body;
    this.follower.toBottom();
    this.run(view, (turn) => turn.send(body));
  }

  stop() {
    this.turn?.stop();
  }

  regenerate(view) {
    regenerate(this, view);
  }

  edit(view, content) {
    edit(this, view, content);
  }

  continueAnswer(view) {
    continueAnswer(this, view);
  }

  retry(view) {
    retry(this, view);
  }
}

const app = new App();
window.sluice = app; // for the console (and the browser tests)
app.start();
