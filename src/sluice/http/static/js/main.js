// The chat page: wires the parts together and owns the flows — send, stop, regenerate,
// edit, versions, open/resume a conversation, settings, shortcuts.

import { announce, setRegion } from "./announce.js";
import { ApiError, NetworkError, api } from "./api.js";
import { Auth } from "./auth.js";
import { Branches } from "./branches.js";
import { Composer } from "./composer.js";
import { Connection } from "./connection.js";
import { Follower } from "./follow.js";
import { Settings } from "./settings.js";
import { bindShortcuts, fillHelp } from "./shortcuts.js";
import { Sidebar } from "./sidebar.js";
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
      version: (view, delta) => this.switchVersion(view, delta),
      edit: (view, text) => this.edit(view, text),
      regenerate: (view) => this.regenerate(view),
      retry: (view) => this.retry(view),
      editUnsent: (view) => this.transcript.questionOf(view)?.startEdit(),
      simulated: (model) => this.settings.simulated(model),
      copy: (text, button) => this.copy(text, button),
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
      rename: (id, title) => this.rename(id, title),
      remove: (conversation) => this.remove(conversation),
    });
    this.settings = new Settings($("#model"), $("#settings-dialog"), {
      change: (fields) => this.changeSettings(fields),
    });
    fillHelp($("#help-table tbody"));
    this.bindControls();
    bindShortcuts({
      newChat: () => this.newChat(),
      focusInput: () => this.composer.focus(),
      stop: () => {
        if (document.body.classList.contains("sidebar-open") && this.narrow()) {
          this.toggleSidebar(false);
          return true;
        }
        if (!this.turn) return false;
        this.stop();
        return true;
      },
      copyLast: () => {
        const answer = this.transcript.last("assistant");
        if (!answer) return false;
        this.copy(answer.text, answer.copyButton);
        return true;
      },
      search: () => {
        this.toggleSidebar(true);
        $("#search").focus();
      },
      toggleSidebar: () => this.toggleSidebar(),
      help: () => $("#help-dialog").showModal(),
    });
    window.addEventListener("hashchange", () => this.route());
  }

  async start() {
    $("#sidebar-toggle").setAttribute("aria-expanded", String(!this.narrow()));
    window.matchMedia("(max-width: 760px)").addEventListener("change", () => {
      document.body.classList.remove("sidebar-open", "sidebar-hidden");
      $("#sidebar-toggle").setAttribute("aria-expanded", String(!this.narrow()));
    });
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

  bindControls() {
    $("#new-chat").addEventListener("click", () => this.newChat());
    $("#sidebar-toggle").addEventListener("click", () => this.toggleSidebar());
    $("#scrim").addEventListener("click", () => this.toggleSidebar(false));
    $("#settings-button").addEventListener("click", () => this.settings.open());
    $("#help-button").addEventListener("click", () => $("#help-dialog").showModal());
    $("#sidebar").addEventListener("click", (event) => {
      if (event.target.closest("a.conversation") && this.narrow()) this.toggleSidebar(false);
    });
    for (const dialog of document.querySelectorAll("dialog")) {
      // A click on the backdrop closes it.
      dialog.addEventListener("click", (event) => {
        if (event.target === dialog && dialog.id !== "key-dialog") dialog.close();
      });
    }
  }

  narrow() {
    return window.matchMedia("(max-width: 760px)").matches;
  }

  toggleSidebar(open) {
    const body = document.body;
    if (this.narrow()) {
      const show = open ?? !body.classList.contains("sidebar-open");
      body.classList.toggle("sidebar-open", show);
      $("#sidebar-toggle").setAttribute("aria-expanded", String(show));
      if (show) $("#search").focus();
      else $("#sidebar-toggle").focus();
    } else {
      const hide = open === undefined ? !body.classList.contains("sidebar-hidden") : !open;
      body.classList.toggle("sidebar-hidden", hide);
      $("#sidebar-toggle").setAttribute("aria-expanded", String(!hide));
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

  /** Remember where the branch we are leaving ended, to come back to the same answer. */
  rememberBranch(fromIndex) {
    const views = this.transcript.views;
    new Branches(this.conversation.id).leave(
      views.slice(fromIndex).map((view) => view.id),
      views[views.length - 1]?.id,
    );
  }

  /** Answer the last question again; `view` is the answer it replaces (or none yet). */
  regenerate(view) {
    if (this.turn || !this.conversation) return;
    const views = this.transcript.views;
    const index = view ? views.indexOf(view) : views.length;
    this.rememberBranch(index);
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
    this.rememberBranch(index);
    this.transcript.truncate(index);
    this.transcript.question(content);
    this.sendTurn({ conversation_id: this.conversation.id, edit: { message_id: view.id, content } });
  }

  retry(view) {
    if (this.turn) return;
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

  async switchVersion(view, delta) {
    if (this.turn || !this.conversation || !view.message) return;
    const { ids, index } = view.message.versions;
    const target = ids[index + delta];
    if (!target) return;
    this.rememberBranch(this.transcript.views.indexOf(view));
    try {
      const leaf = new Branches(this.conversation.id).leafFor(target);
      await api.updateConversation(this.conversation.id, { leaf_id: leaf });
      const conversation = await api.conversation(this.conversation.id);
      this.show(conversation);
      this.transcript.sync(conversation.messages);
      announce(`Version ${index + delta + 1} of ${ids.length}`);
      const again = this.transcript.views.find((v) => v.id === target);
      again?.versionsBox.querySelector(delta < 0 ? ".version-prev" : ".version-next")?.focus();
      this.resumeIfStreaming(conversation.messages);
    } catch (error) {
      if (error instanceof NetworkError) this.connection.lost();
      else announce(`Could not switch version: ${error.message}`);
    }
  }

  // --- conversations ---

  async changeSettings(fields) {
    if (!this.conversation) {
      this.draft = { ...this.draft, ...fields };
      return;
    }
    try {
      const updated = await api.updateConversation(this.conversation.id, fields);
      this.conversation = { ...this.conversation, ...updated };
      this.settings.show(this.conversation);
      announce("Settings saved");
    } catch (error) {
      announce(`Settings not saved: ${error.message}`);
      if (error instanceof NetworkError) this.connection.lost();
    }
  }

  async rename(id, title) {
    try {
      await api.updateConversation(id, { title });
      if (this.conversation?.id === id) {
        this.conversation.title = title;
        this.setTitle(title);
      }
      announce("Renamed");
    } catch (error) {
      announce(`Not renamed: ${error.message}`);
    }
    this.sidebar.refresh();
  }

  remove(conversation) {
    const dialog = $("#confirm-dialog");
    dialog.querySelector(".confirm-text").textContent =
      `Delete “${conversation.title || "New chat"}”? This cannot be undone.`;
    dialog.returnValue = "";
    dialog.onclose = async () => {
      if (dialog.returnValue !== "delete") return;
      try {
        await api.deleteConversation(conversation.id);
        new Branches(conversation.id).forget();
        announce("Conversation deleted");
        if (this.conversation?.id === conversation.id) this.newChat();
      } catch (error) {
        announce(`Not deleted: ${error.message}`);
      }
      this.sidebar.refresh();
    };
    dialog.showModal();
  }

  async copy(text, button) {
    let ok = true;
    try {
      await navigator.clipboard.writeText(text);
    } catch {
      const area = document.createElement("textarea");
      area.value = text;
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      ok = document.execCommand("copy");
      area.remove();
    }
    announce(ok ? "Copied" : "Could not copy");
    if (button) {
      button.classList.add("copied");
      if (button.classList.contains("copy-code")) button.textContent = ok ? "Copied" : "Failed";
      setTimeout(() => {
        button.classList.remove("copied");
        if (button.classList.contains("copy-code")) button.textContent = "Copy";
      }, 1500);
    }
  }
}

const app = new App();
window.sluice = app; // for the console (and the browser tests)
app.start();
