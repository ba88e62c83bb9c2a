// The page's words in English and Japanese. `t(key, params)` gives the current language's
// text, "{name}" filled from `params`. The language is the reader's choice (kept in this
// browser), else the first of the browser's languages that the page speaks, else English.
// Static text in index.html names its key: data-i18n (the text), data-i18n-attr
// ("placeholder=key;title=key"); a text with markup keeps its elements as data-slot
// children, placed where "{slot}" stands.

const KEY = "sluice.language";
export const LANGUAGES = ["en", "ja"];

/** key: [English, Japanese] */
const STRINGS = {
  "app.skip": ["Skip to the message box", "メッセージ入力欄へ移動"],
  "app.newChat": ["New chat", "新しいチャット"],
  "app.newChatShortcut": ["New chat (Ctrl+Shift+O)", "新しいチャット（Ctrl+Shift+O）"],
  "app.conversations": ["Conversations", "会話"],
  "app.conversationsShortcut": ["Conversations (Ctrl+Shift+S)", "会話一覧（Ctrl+Shift+S）"],
  "app.conversationList": ["Conversation list", "会話の一覧"],
  "app.conversation": ["Conversation", "会話"],
  "app.messages": ["Messages", "メッセージ"],
  "app.loading": ["Loading…", "読み込み中…"],
  "search.placeholder": ["Search conversations", "会話を検索"],
  "sidebar.none": ["No conversations yet.", "まだ会話はありません。"],
  "sidebar.noMatch": ["No conversation mentions “{query}”.", "「{query}」を含む会話はありません。"],
  "sidebar.more": ["Show more", "さらに表示"],
  "sidebar.rename": ["Rename “{title}”", "「{title}」の名前を変更"],
  "sidebar.delete": ["Delete “{title}”", "「{title}」を削除"],
  "sidebar.pin": ["Pin “{title}”", "「{title}」をピン留め"],
  "sidebar.unpin": ["Unpin “{title}”", "「{title}」のピン留めを外す"],
  "sidebar.newTitle": ["New title", "新しいタイトル"],
  "sidebar.pinned": ["Pinned", "ピン留めしました"],
  "sidebar.unpinned": ["Unpinned", "ピン留めを外しました"],
  "sidebar.notPinned": ["Not changed: {error}", "変更できませんでした：{error}"],
  "group.pinned": ["Pinned", "ピン留め"],
  "group.week": ["Previous 7 days", "過去 7 日間"],
  "group.older": ["Older", "それ以前"],
  "help.button": ["Keyboard shortcuts", "キーボードショートカット"],
  "help.keys": ["Keys", "キー"],
  "help.action": ["Action", "操作"],
  "theme.system": ["Theme: system", "テーマ：システム設定"],
  "theme.light": ["Theme: light", "テーマ：ライト"],
  "theme.dark": ["Theme: dark", "テーマ：ダーク"],
  "theme.change": ["{label} (click to change)", "{label}（クリックで切り替え）"],
  "auth.signOut": ["Sign out", "サインアウト"],
  "auth.title": ["Sign in", "サインイン"],
  "auth.intro": [
    "This gateway needs an API key. It is exchanged for a session in this browser and not stored.",
    "このゲートウェイを使うには API キーが必要です。キーはこのブラウザーのセッションに引き換えられ、保存はされません。",
  ],
  "auth.key": ["API key", "API キー"],
  "auth.continue": ["Continue", "続ける"],
  "auth.unreachable": ["The server cannot be reached.", "サーバーに接続できません。"],
  "auth.refused": ["That key was not accepted.", "このキーは受け付けられませんでした。"],
  "model.label": ["Model", "モデル"],
  "model.default": ["Default model", "既定のモデル"],
  "model.defaultNamed": ["Default ({model})", "既定（{model}）"],
  "model.unavailable": ["{model} (unavailable)", "{model}（利用不可）"],
  "sim.badge": ["Simulated", "シミュレーション"],
  "sim.title": [
    "Answers come from sluice's built-in simulated model: generated text, not a language model",
    "回答は sluice 組み込みのシミュレーションモデルが生成したテキストで、言語モデルによるものではありません",
  ],
  "export.button": ["Export conversation", "会話をエクスポート"],
  "export.menu": ["Export as", "エクスポート形式"],
  "export.markdown": ["Export as Markdown", "Markdown でエクスポート"],
  "export.json": ["Export as JSON", "JSON でエクスポート"],
  "export.done": ["Exported as {format}", "{format} でエクスポートしました"],
  "export.failed": ["Not exported: {error}", "エクスポートできませんでした：{error}"],
  "share.button": ["Share conversation", "会話を共有"],
  "share.buttonTitle": ["Share a read-only link", "閲覧専用のリンクで共有"],
  "share.menu": ["Share a read-only link…", "閲覧専用のリンクで共有…"],
  "share.intro": [
    "Anyone with a link can read this conversation's questions and answers without signing in — not its system prompt, settings or who you are. A link is shown once; revoke it to close it.",
    "リンクを知っている人は、サインインせずにこの会話の質問と回答を読めます。システムプロンプト、設定、あなたが誰かは見えません。リンクは一度だけ表示されます。閉じるには取り消してください。",
  ],
  "share.newLink": ["New link", "新しいリンク"],
  "share.live": ["Live links", "有効なリンク"],
  "share.none": ["No live links.", "有効なリンクはありません。"],
  "share.create": ["Create link", "リンクを作成"],
  "share.item": ["Link · created {when}", "リンク・{when} に作成"],
  "share.itemNew": ["New link · created {when}", "新しいリンク・{when} に作成"],
  "share.revoke": ["Revoke", "取り消す"],
  "share.revokeLabel": ["Revoke the link created {when}", "{when} に作成したリンクを取り消す"],
  "share.created": ["Share link created", "共有リンクを作成しました"],
  "share.revoked": ["Link revoked", "リンクを取り消しました"],
  "share.listFailed": ["Could not list the links: {error}", "リンクを表示できませんでした：{error}"],
  "share.createFailed": ["No link made: {error}", "リンクを作成できませんでした：{error}"],
  "share.revokeFailed": ["Not revoked: {error}", "取り消せませんでした：{error}"],
  "shared.note": ["Shared conversation · read-only", "共有された会話・閲覧専用"],
  "shared.asked": ["The question:", "質問："],
  "shared.untitled": ["Untitled conversation", "無題の会話"],
  "shared.pageTitle": ["{title} · shared · sluice", "{title}・共有・sluice"],
  "shared.notFound": ["Not found · sluice", "見つかりません・sluice"],
  "shared.missingTitle": ["This link does not work", "このリンクは使えません"],
  "shared.missingText": [
    "It may have been revoked by its owner, or the conversation deleted.",
    "所有者がリンクを取り消したか、会話が削除された可能性があります。",
  ],
  "shared.failed": [
    "Could not load this conversation: {error}. Reload to try again.",
    "会話を読み込めませんでした：{error}。再読み込みしてください。",
  ],
  "settings.button": ["Chat settings", "チャットの設定"],
  "settings.buttonTitle": ["Chat settings: system prompt, temperature", "チャットの設定：システムプロンプト、温度"],
  "settings.title": ["Chat settings", "チャットの設定"],
  "settings.system": ["System prompt", "システムプロンプト"],
  "settings.systemPlaceholder": ["You are a helpful assistant.", "あなたは親切なアシスタントです。"],
  "settings.temperature": ["Temperature", "温度（temperature）"],
  "settings.defaultTemperature": ["Use the model's default temperature", "モデル既定の温度を使う"],
  "settings.modelDefault": ["model default", "モデル既定"],
  "settings.more": ["More options (JSON)", "その他のオプション（JSON）"],
  "settings.moreHint": ["Passed to the model with each turn, e.g. {code}.", "送信のたびにモデルへ渡されます。例：{code}"],
  "settings.moreLabel": ["More options as JSON", "その他のオプション（JSON）"],
  "settings.badJson": ["Not valid JSON: {error}", "JSON として正しくありません：{error}"],
  "settings.notObject": [
    "Options must be a JSON object, like {\"max_tokens\": 500}.",
    "オプションは {\"max_tokens\": 500} のような JSON オブジェクトで指定してください。",
  ],
  "settings.language": ["Language", "表示言語"],
  "settings.languageAuto": ["Same as the browser", "ブラウザーの設定に合わせる"],
  "settings.languageHint": ["Applies to this browser at once.", "このブラウザーにすぐ反映されます。"],
  "settings.saved": ["Settings saved", "設定を保存しました"],
  "settings.notSaved": ["Settings not saved: {error}", "設定を保存できませんでした：{error}"],
  "dialog.cancel": ["Cancel", "キャンセル"],
  "dialog.save": ["Save", "保存"],
  "dialog.close": ["Close", "閉じる"],
  "dialog.delete": ["Delete", "削除"],
  "confirm.title": ["Delete conversation", "会話を削除"],
  "confirm.text": ["Delete “{title}”? This cannot be undone.", "「{title}」を削除しますか？この操作は取り消せません。"],
  "manage.renamed": ["Renamed", "名前を変更しました"],
  "manage.notRenamed": ["Not renamed: {error}", "名前を変更できませんでした：{error}"],
  "manage.deleted": ["Conversation deleted", "会話を削除しました"],
  "manage.notDeleted": ["Not deleted: {error}", "削除できませんでした：{error}"],
  "banner.retry": ["Retry now", "今すぐ再試行"],
  "banner.down": ["Cannot reach the server. Retrying…", "サーバーに接続できません。再試行しています…"],
  "banner.up": ["Connected again.", "再接続しました。"],
  "welcome.title": ["What can I help with?", "何かお手伝いできることはありますか？"],
  "welcome.body": [
    "Answers stream in as they are written. {enter} sends, {shift}+{enter} adds a line, {help} lists the shortcuts.",
    "回答は書かれたそばから表示されます。{enter} で送信、{shift}+{enter} で改行、{help} でショートカットの一覧を表示します。",
  ],
  "jump.latest": ["Jump to latest", "最新へ移動"],
  "composer.label": ["Message", "メッセージ"],
  "composer.placeholder": ["Message…", "メッセージを入力…"],
  "composer.send": ["Send (Enter)", "送信（Enter）"],
  "composer.stop": ["Stop generating (Esc)", "生成を停止（Esc）"],
  "attach.button": ["Attach files (images, text)", "ファイルを添付（画像・テキスト）"],
  "attach.list": ["Files to send", "送信するファイル"],
  "attach.sent": ["Attached files", "添付ファイル"],
  "attach.remove": ["Remove {name}", "{name} を外す"],
  "attach.removed": ["Removed {name}", "{name} を外しました"],
  "attach.added": ["{count} file(s) attached", "{count} 件のファイルを添付しました"],
  "attach.tooMany": ["At most {limit} files per message.", "1 つのメッセージに添付できるのは {limit} 件までです。"],
  "attach.unsupported": [
    "{name} cannot be sent: attach an image (PNG, JPEG, GIF, WebP) or a text file.",
    "{name} は送信できません。画像（PNG、JPEG、GIF、WebP）かテキストファイルを添付してください。",
  ],
  "attach.tooLarge": [
    "{name} is {size}; files of this kind can be at most {limit}.",
    "{name} は {size} あります。この種類のファイルは {limit} までです。",
  ],
  "attach.total": [
    "{name} does not fit: a message's files can total at most {limit}.",
    "{name} は添付できません。1 つのメッセージのファイルは合計 {limit} までです。",
  ],
  "attach.notText": [
    "{name} is not UTF-8 text.",
    "{name} は UTF-8 のテキストではありません。",
  ],
  "state.generating": ["Generating", "生成しています"],
  "state.done": ["Done", "完了しました"],
  "state.stopped": ["Stopped", "停止しました"],
  "state.failed": ["Failed: {error}", "失敗しました：{error}"],
  "open.gone": ["That conversation no longer exists.", "この会話はもう存在しません。"],
  "open.failed": ["Could not open it: {error}", "開けませんでした：{error}"],
  "msg.youSaid": ["You said:", "あなたの発言："],
  "msg.assistantSaid": ["The assistant said:", "アシスタントの回答："],
  "msg.prevVersion": ["Previous version", "前のバージョン"],
  "msg.nextVersion": ["Next version", "次のバージョン"],
  "msg.version": ["Version {index} of {count}", "バージョン {index}/{count}"],
  "msg.versionFailed": ["Could not switch version: {error}", "バージョンを切り替えられませんでした：{error}"],
  "msg.editResend": ["Edit and resend", "編集して再送信"],
  "msg.copyMessage": ["Copy message", "メッセージをコピー"],
  "msg.notSent": ["Not sent", "未送信"],
  "msg.editLabel": ["Edit your message", "メッセージを編集"],
  "msg.send": ["Send", "送信"],
  "msg.showMore": ["Show more", "すべて表示"],
  "msg.showLess": ["Show less", "折りたたむ"],
  "msg.unanswered": ["This version of the question has no answer shown here.", "このバージョンの質問には、ここに表示できる回答がありません。"],
  "msg.answerIt": ["Answer it", "回答を生成"],
  "answer.copy": ["Copy answer", "回答をコピー"],
  "answer.regenerate": ["Regenerate answer", "回答を再生成"],
  "answer.continue": ["Continue", "続きを生成"],
  "answer.continueTitle": ["Continue generating this answer", "この回答の続きを生成"],
  "answer.simulatedModel": ["{model} · simulated", "{model}・シミュレーション"],
  "answer.simulatedTitle": [
    "Written by sluice's built-in simulated model, not a language model",
    "言語モデルではなく、sluice 組み込みのシミュレーションモデルが書いた回答です",
  ],
  "answer.modelTitle": ["The model that wrote this answer", "この回答を書いたモデル"],
  "answer.retry": ["Retry", "再試行"],
  "answer.retryIn": ["Retry in {seconds} s", "{seconds} 秒後に再試行"],
  "answer.edit": ["Edit", "編集"],
  "answer.thinking": ["Thinking", "考えています"],
  "answer.stopping": ["Stopping…", "停止しています…"],
  "answer.reconnecting": ["Reconnecting…", "再接続しています…"],
  "answer.toolCall": ["Tool call: {name}", "ツール呼び出し：{name}"],
  "answer.interrupted": ["Interrupted", "中断"],
  "answer.interruptedText": [
    "Interrupted: the server stopped before the answer was finished.",
    "中断：回答が終わる前にサーバーが停止しました。",
  ],
  "answer.interruptedEmpty": [
    "Interrupted: the server stopped before the answer began.",
    "中断：回答が始まる前にサーバーが停止しました。",
  ],
  "answer.stopped": ["Stopped", "停止"],
  "answer.stoppedEmpty": ["Stopped before the answer began.", "回答が始まる前に停止しました。"],
  "answer.length": ["Cut off at the token limit", "トークン上限で打ち切り"],
  "answer.filtered": ["Stopped by the content filter", "コンテンツフィルターにより停止"],
  "answer.failed": ["Failed", "失敗"],
  "answer.failedText": ["The answer failed.", "回答を生成できませんでした。"],
  "answer.unreachable": ["Could not reach the server.", "サーバーに接続できませんでした。"],
  "answer.failover": ["Switched from {from} to {to} mid-answer.", "回答の途中で {from} から {to} に切り替えました。"],
  "metric.speed": ["Speed", "速度"],
  "metric.tokens": ["Tokens", "トークン"],
  "metric.cache": ["Cache", "キャッシュ"],
  "metric.cached": ["cached", "キャッシュ済み"],
  "metric.cost": ["Cost", "費用"],
  "metric.costTitle": [
    "What this answer cost at the model's configured price (the gateway's currency units)",
    "モデルに設定された価格で計算したこの回答の費用（ゲートウェイの通貨単位）",
  ],
  "metric.budget": ["Budget", "予算"],
  "metric.leftDay": ["{tokens} tokens left today", "本日の残り {tokens} トークン"],
  "metric.leftMonth": ["{tokens} tokens left this month", "今月の残り {tokens} トークン"],
  "metric.budgetTitle": [
    "What this key's budget of {tokens} tokens has left",
    "このキーの予算 {tokens} トークンのうちの残り",
  ],
  "metric.inOut": ["{out} out · {in} in", "出力 {out}・入力 {in}"],
  "metric.out": ["{out} out", "出力 {out}"],
  "metric.ttftTitle": ["Time to first token, measured by the gateway", "最初のトークンまでの時間（ゲートウェイで計測）"],
  "metric.speedTitle": ["Tokens per second after the first, from the gateway", "最初のトークン以降の毎秒トークン数（ゲートウェイで計測）"],
  "metric.estimatedTitle": ["Estimated by the gateway (the model reported no usage)", "ゲートウェイによる推定値（モデルから使用量の報告がありません）"],
  "metric.reportedTitle": ["Reported by the model", "モデルが報告した値"],
  "metric.cachedTitle": [
    "Served from the response cache (or shared with an identical request): no model tokens were spent",
    "応答キャッシュ（または同一リクエストとの共有）から返したため、モデルのトークンは消費していません",
  ],
  "metric.ttftPendingTitle": [
    "Time to first token: this page joined mid-answer; the gateway's figure comes at the end",
    "最初のトークンまでの時間：このページは回答の途中から表示しているため、ゲートウェイの値は最後に届きます",
  ],
  "metric.ttftLiveTitle": [
    "Time to first token as seen by this browser; the gateway's figure replaces it at the end",
    "このブラウザーで見た最初のトークンまでの時間。最後にゲートウェイの値に置き換わります",
  ],
  "metric.speedLiveTitle": [
    "Tokens per second arriving now (one per stream chunk, about); the gateway's figure replaces it at the end",
    "いま届いている毎秒トークン数（ストリームの 1 チャンクを約 1 トークンとして計算）。最後にゲートウェイの値に置き換わります",
  ],
  "metric.tokensLiveTitle": [
    "Tokens received so far (one per stream chunk, about); the model's count arrives at the end",
    "これまでに届いたトークン数（1 チャンクを約 1 トークンとして計算）。最後にモデルの集計が届きます",
  ],
  "copy.done": ["Copied", "コピーしました"],
  "copy.failed": ["Could not copy", "コピーできませんでした"],
  "copy.button": ["Copy", "コピー"],
  "copy.buttonDone": ["Copied", "コピー済み"],
  "copy.buttonFailed": ["Failed", "失敗"],
  "copy.code": ["Copy {lang}", "{lang} をコピー"],
  "copy.codeDefault": ["code", "コード"],
  "inline.bidi": ["An invisible text-direction control character", "目に見えない文字方向の制御文字"],
  "inline.image": ["Image removed: not an http(s) address", "画像は表示していません：http(s) のアドレスではありません"],
  "inline.link": [
    "Link removed: only http, https and mailto addresses are followed",
    "リンクを無効にしました：有効なのは http、https、mailto のアドレスだけです",
  ],
  "keys.newChat": ["New chat", "新しいチャット"],
  "keys.focus": ["Focus the message box", "メッセージ入力欄に移動"],
  "keys.focusNotTyping": ["Focus the message box (when not typing)", "メッセージ入力欄に移動（入力中以外）"],
  "keys.stop": ["Stop generating", "生成を停止"],
  "keys.copyLast": ["Copy the last answer", "最後の回答をコピー"],
  "keys.search": ["Search conversations", "会話を検索"],
  "keys.sidebar": ["Show or hide the conversation list", "会話の一覧を表示／非表示"],
  "keys.helpNotTyping": ["Show these shortcuts (when not typing)", "このショートカット一覧を表示（入力中以外）"],
  "keys.help": ["Show these shortcuts", "このショートカット一覧を表示"],
  "keys.send": ["Send the message", "メッセージを送信"],
  "keys.newline": ["New line in the message", "メッセージ内で改行"],
  "keys.editLast": ["Edit your last message (in an empty message box)", "直前のメッセージを編集（入力欄が空のとき）"],
  "keys.move": ["Move through the conversation list", "会話の一覧を移動"],
  "keys.rename": ["Rename the conversation (in the list)", "会話の名前を変更（一覧で）"],
  "keys.delete": ["Delete the conversation (in the list)", "会話を削除（一覧で）"],
};

function dictionary(column) {
  return Object.fromEntries(Object.entries(STRINGS).map(([key, texts]) => [key, texts[column]]));
}

export const en = dictionary(0);
export const ja = dictionary(1);
const DICTIONARIES = { en, ja };

/** The page's language for a browser preferring `languages` (navigator.languages). */
export function browserLanguage(languages = navigator.languages || [navigator.language]) {
  for (const tag of languages || []) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

/** The reader's own choice in this browser ("" when none: the browser's decides). */
export function storedLanguage() {
  try {
    const value = localStorage.getItem(KEY);
    return LANGUAGES.includes(value) ? value : "";
  } catch {
    return ""; // storage refused (private mode)
  }
}

let current = storedLanguage() || browserLanguage();
document.documentElement.lang = current;

/** "en" or "ja". */
export function language() {
  return current;
}

export function t(key, params) {
  const text = DICTIONARIES[current][key] ?? en[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (name in params ? String(params[name]) : whole));
}

/** Put `text` in `node`, each "{slot}" replaced by a copy of that slot's element. */
function fillSlots(node, text) {
  node.slots ??= Object.fromEntries(
    [...node.querySelectorAll("[data-slot]")].map((slot) => [slot.dataset.slot, slot]),
  );
  const parts = text.split(/\{(\w+)\}/);
  node.replaceChildren(...parts.map((part, index) => {
    if (index % 2 === 0) return document.createTextNode(part);
    return node.slots[part]?.cloneNode(true) ?? document.createTextNode(`{${part}}`);
  }));
}

/** Translate the static text under `root` (data-i18n, data-i18n-attr). */
export function translate(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) {
    const text = t(node.dataset.i18n);
    if (node.querySelector("[data-slot]") || node.slots) fillSlots(node, text);
    else node.textContent = text;
  }
  for (const node of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of node.dataset.i18nAttr.split(";")) {
      const [attribute, key] = pair.split("=").map((part) => part.trim());
      if (attribute && key) node.setAttribute(attribute, t(key));
    }
  }
}

/** Choose the language ("" follows the browser), keep the choice, and redraw the text. */
export function setLanguage(choice) {
  const chosen = LANGUAGES.includes(choice) ? choice : "";
  try {
    if (chosen) localStorage.setItem(KEY, chosen);
    else localStorage.removeItem(KEY);
  } catch {
    // not kept: this page still shows it
  }
  const next = chosen || browserLanguage();
  if (next === current) return;
  current = next;
  document.documentElement.lang = current;
  translate();
  window.dispatchEvent(new CustomEvent("sluice:language", { detail: current }));
}
