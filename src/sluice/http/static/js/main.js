// The chat page: wires the parts together and owns the flows — send, stop, regenerate,
// edit, continue, versions, open/resume a conversation, shortcuts. Managing conversations
// (settings, rename, delete) is manage.js's; versions, branches.js's; export, export.js's.

import { announce, setRegion } from "./announce.js";
import { ApiError, NetworkError, api } from "./api.js";
import { Auth } from "./auth.js";
import { leaveBranch, switchVersion } from "./branches.js";
import { copyText } from "./clipboard.js";
import { Composer } from "./composer.js";
import { Connection } from "./connection.js";
import { ExportMenu } from "./export.js";
import { Follower } from "./follow.js";
import { Layout } from "./layout.js";
import { changeSettings, removeConversation, rename } from "./manage.js";
import { Settings } from "./settings.js";
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
      copy: copyText,
    });
    this.unsent = new UnsentQuestions(this.transcript, (text) => this.bodyFor(text));
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
    });
    this.settings = new Settings($("#model"), $("#settings-dialog"), {
      change: (fields) => changeSettings(this, fields),
    });
    this.exportMenu = new ExportMenu($("#export-button"), $("#export-menu"), {
      current: () => this.conversation?.id ?? null,
      load: (id) => api.conversation(id),
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
    $("#chat-title").textContent = title || "New chat";
    $("#export-button").hidden = !this.conversation;
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
          ? "That conversation no longer exists." : `Could not open it: ${error.message}`);
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
      thinking: "Generating",
      streaming: turn.announced ? null : "Generating",
      done: "Done",
      stopped: "Stopped",
      failed: `Failed: ${turn.error?.message || "the answer failed"}`,
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
    this.refresh();
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
    // A question still waiting to be sent gives way to this one (one kept per conversation).
    this.unsent.clear(this.conversation?.id || null);
    const question = this.transcript.question(text);
    question.after = this.transcript.views.at(-2)?.id ?? null;
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

  /** Answer the last question again; `view` is the answer it replaces (or none yet). */
  regenerate(view) {
    if (this.turn || !this.conversation) return;
    const views = this.transcript.views;
    const index = view ? views.indexOf(view) : views.length;
    leaveBranch(this, index);
    this.transcript.truncate(index);
    this.sendTurn({ conversation_id: this.conversation.id, regenerate: true });
  }

  edit(view, content) {
    if (this.turn) return;
    if (view.unsent) {
      // Not sent yet: the edited words are sent as a new question.
      this.transcript.truncate(this.transcript.views.indexOf(view));
      this.send(content);
      return;
    }
    if (!this.conversation || !view.id) return;
    const index = this.transcript.views.indexOf(view);
    leaveBranch(this, index);
    this.transcript.truncate(index);
    this.transcript.question(content);
    this.sendTurn({ conversation_id: this.conversation.id, edit: { message_id: view.id, content } });
  }

  /** Carry on an answer that was stopped, interrupted or cut off: the same message grows. */
  continueAnswer(view) {
    if (this.turn || !this.conversation || !view.id) return;
    const body = { conversation_id: this.conversation.id, continue_id: view.id };
    view.retryBody = body;
    // The server carries on from the stored text (after a crash, up to a second less
    // than this page had shown): that is the text that grows.
    const stored = view.message && view.message.status !== "streaming" ? view.message.content : null;
    this.run(view, (turn) => turn.send(body, stored || view.text));
  }

  retry(view) {
    if (this.turn) return;
    // A Continue that never reached the server is sent again; one that failed on the way
    // is answered again, like any failed answer.
    if (view.retryBody?.continue_id && view.unsentTurn) {
      this.continueAnswer(view);
      return;
    }
    const index = this.transcript.views.indexOf(view);
    if (view.id || !view.retryBody) {
      this.regenerate(view);
      return;
    }
    // Nothing was stored (the request itself failed): send the same turn again.
    if (view.unsent) this.unsent.release(view);
    this.transcript.truncate(index);
    this.sendTurn(view.retryBody);
  }
}

const app = new App();
window.sluice = app; // for the console (and the browser tests)
app.start();
