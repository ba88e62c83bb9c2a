// Working on an answer or question already shown: answer again (regenerate), edit and
// resend a question, carry on a stopped or cut-off answer (continue), retry a failure.
// Each starts a turn through the page (`app`, main.js's App) and leaves the old branch.

import { leaveBranch } from "./branches.js";

/** Answer the last question again; `view` is the answer it replaces (or none yet). */
export function regenerate(app, view) {
  if (app.turn || !app.conversation) return;
  const views = app.transcript.views;
  const index = view ? views.indexOf(view) : views.length;
  leaveBranch(app, index);
  app.transcript.truncate(index);
  app.sendTurn({ conversation_id: app.conversation.id, regenerate: true });
}

export function edit(app, view, content) {
  if (app.turn) return;
  if (view.unsent) {
    // Not sent yet: the edited words are sent as a new question.
    app.transcript.truncate(app.transcript.views.indexOf(view));
    app.send(content);
    return;
  }
  if (!app.conversation || !view.id) return;
  const index = app.transcript.views.indexOf(view);
  leaveBranch(app, index);
  app.transcript.truncate(index);
  app.transcript.question(content);
  app.sendTurn({ conversation_id: app.conversation.id, edit: { message_id: view.id, content } });
}

/** Carry on an answer that was stopped, interrupted or cut off: the same message grows. */
export function continueAnswer(app, view) {
  if (app.turn || !app.conversation || !view.id) return;
  const body = { conversation_id: app.conversation.id, continue_id: view.id };
  view.retryBody = body;
  // The server carries on from the stored text (after a crash, up to a second less
  // than this page had shown): that is the text that grows.
  const stored = view.message && view.message.status !== "streaming" ? view.message.content : null;
  app.run(view, (turn) => turn.send(body, stored || view.text));
}

export function retry(app, view) {
  if (app.turn) return;
  // A Continue that never reached the server is sent again; one that failed on the way
  // is answered again, like any failed answer.
  if (view.retryBody?.continue_id && view.unsentTurn) {
    continueAnswer(app, view);
    return;
  }
  const index = app.transcript.views.indexOf(view);
  if (view.id || !view.retryBody) {
    regenerate(app, view);
    return;
  }
  // Nothing was stored (the request itself failed): send the same turn again.
  if (view.unsent) app.unsent.release(view);
  app.transcript.truncate(index);
  app.sendTurn(view.retryBody);
}
