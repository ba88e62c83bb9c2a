// Questions that never reached the server (offline, refused with a 429 or a 400): kept in
// this browser, one per conversation ("new" for a chat not started yet), until they are
// sent, edited away or found stored after all — so a reconnect or a reload loses no words.

const PREFIX = "sluice.unsent.";

function key(conversationId) {
  return PREFIX + (conversationId || "new");
}

/** {text, after, error: {message, status, retryable}, retryAt} or null. */
function readUnsent(conversationId) {
  try {
    const record = JSON.parse(localStorage.getItem(key(conversationId)) || "null");
    return record && typeof record.text === "string" ? record : null;
  } catch {
    return null;
  }
}

function keepUnsent(conversationId, record) {
  try {
    localStorage.setItem(key(conversationId), JSON.stringify(record));
  } catch {
    // Storage full or refused (private mode): the card still shows until a reload.
  }
}

function forgetUnsent(conversationId) {
  try {
    localStorage.removeItem(key(conversationId));
  } catch {
    // Nothing kept, nothing to forget.
  }
}

/** Whether the server stored it after all (the connection broke after the request left). */
function delivered(messages, record) {
  return messages.some((m) => m.role === "user" && m.content === record.text &&
    (m.parent_id ?? null) === (record.after ?? null));
}

/** The page's side: the marked question and its failed answer, in the transcript. */
export class UnsentQuestions {
  /** bodyFor(text): the turn that sends `text` now (into the open conversation, or a new one). */
  constructor(transcript, bodyFor) {
    this.transcript = transcript;
    this.bodyFor = bodyFor;
  }

  /** A question kept from an earlier visit: shown again, failed, with its next step. */
  show(conversationId, messages) {
    const record = readUnsent(conversationId);
    if (!record) return;
    if (delivered(messages, record)) {
      forgetUnsent(conversationId);
      return;
    }
    const question = this.transcript.question(record.text);
    question.after = record.after ?? null;
    question.setUnsent(true);
    const answer = this.transcript.answer();
    answer.unsent = true;
    answer.retryBody = this.bodyFor(record.text);
    answer.fail({ ...record.error, resend: true, retryAt: record.retryAt }, "");
    this.transcript.update();
  }

  /** A turn whose request never got a stream: keep its question (a new question only). */
  keep(turn) {
    const body = turn.body;
    const question = this.transcript.questionOf(turn.view);
    if (!body || typeof body.message !== "string" || !question) return;
    const error = turn.error;
    question.setUnsent(true);
    turn.view.unsent = true;
    turn.view.fail(error, turn.view.text); // again, now with its Edit button
    keepUnsent(body.conversation_id || null, {
      text: body.message,
      after: question.after ?? null,
      error: { message: error.message, status: error.status, retryable: error.retryable },
      retryAt: error.retryAt || null,
    });
  }

  /** The conversation read again: a question the server has after all is no longer kept. */
  reconcile(conversationId, messages) {
    const record = readUnsent(conversationId);
    if (record && delivered(messages, record)) {
      forgetUnsent(conversationId);
      this.transcript.dropUnsent();
    }
  }

  /** Sent again (Retry): no longer marked nor kept, unless it fails again. */
  release(answer) {
    this.transcript.questionOf(answer)?.setUnsent(false);
    forgetUnsent(answer.retryBody?.conversation_id || null);
  }

  /** Another question is sent: it takes the kept one's place (one per conversation). */
  clear(conversationId) {
    this.transcript.dropUnsent();
    forgetUnsent(conversationId);
  }
}
