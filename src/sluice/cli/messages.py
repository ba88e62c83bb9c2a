"""The terminal chat's own words, in English and Japanese.

``t(text, **params)`` gives ``text`` (an English template, as gettext's msgid) in the
chat's language, ``{name}`` filled from ``params``; a text with no Japanese entry stays
English. The language comes from the locale variables, read once at the edge
(``sluice chat``): the first of ``LC_ALL``, ``LC_MESSAGES``, ``LANG`` that is set decides
(POSIX precedence), ``ja*`` meaning Japanese. Log lines and the model's text are not
translated.
"""

from __future__ import annotations

from collections.abc import Mapping

LANGUAGES = ("en", "ja")

#: English template -> Japanese. English is the template itself.
JA: dict[str, str] = {
    # /help: the commands
    "list the models, or switch to NAME (kept with the conversation)": (
        "モデルの一覧を表示、または NAME に切り替え（会話に保存）"
    ),
    "show, set or clear the system prompt (kept, too)": (
        "システムプロンプトを表示・設定・解除（これも会話に保存）"
    ),
    "show or set the temperature, 0 to 2 (kept, too)": (
        "温度（temperature、0〜2）を表示・設定（これも会話に保存）"
    ),
    "show, set or remove a model option (max_tokens, seed…)": (
        "モデルのオプション（max_tokens、seed など）を表示・設定・削除"
    ),
    "how the model's reasoning is drawn": "モデルの推論（reasoning）の表示方法",
    "answer the last question again (kept as a new version)": (
        "最後の質問に答え直す（新しいバージョンとして保存）"
    ),
    "carry on the last answer, stopped or cut off (the same answer grows)": (
        "停止した・打ち切られた最後の回答の続きを生成（同じ回答に追記）"
    ),
    "start a new conversation": "新しい会話を始める",
    "show this conversation so far": "この会話のこれまでの内容を表示",
    "copy the last answer to the clipboard": "最後の回答をクリップボードにコピー",
    "save this conversation as markdown (or JSON: FILE.json)": (
        "この会話を Markdown で保存（FILE.json なら JSON）"
    ),
    "multi-line mode: Enter adds a line, Esc-Enter sends": (
        "複数行モード：Enter で改行、Esc-Enter で送信"
    ),
    "this list": "この一覧",
    "quit (also /quit and Ctrl-D)": "終了（/quit、Ctrl-D でも可）",
    # /help: the keys
    "stop the answer being written; clear the line; twice on an empty line: quit": (
        "生成中の回答を停止／入力行を消去／空の行で 2 回押すと終了"
    ),
    "quit": "終了",
    "a new line (sends, in multi-line mode)": "改行（複数行モードでは送信）",
    "earlier questions, also from earlier sessions": "以前の質問（前回のセッションのものも）",
    "edit the question in $EDITOR": "$EDITOR で質問を編集",
    "send a message that starts with /": "/ で始まるメッセージを送信",
    # commands' answers
    "unknown command {name}; {hint}/help lists them": (
        "{name} というコマンドはありません。{hint}/help で一覧を表示します"
    ),
    "did you mean {names}? ": "{names} のことですか？ ",
    " or ": "、",
    "no model {name!r}; pick one of: {models}": (
        "モデル {name!r} はありません。次から選んでください：{models}"
    ),
    "model: {name}": "モデル：{name}",
    "not saved to the conversation: {error}": "会話に保存できませんでした：{error}",
    "(none set here; the conversation's own, if any)": (
        "（ここでは未設定。会話に設定があればそれを使用）"
    ),
    "system prompt: {prompt}": "システムプロンプト：{prompt}",
    "system prompt cleared": "システムプロンプトを解除しました",
    "system prompt set": "システムプロンプトを設定しました",
    "the model's default": "モデルの既定値",
    "temperature: {value}": "温度：{value}",
    "temperature {value!r} is not a number from 0 to 2": (
        "温度 {value!r} は 0〜2 の数値ではありません"
    ),
    "no options set; /option KEY=JSON sets one (max_tokens=200, seed=1…)": (
        "オプションは未設定です。/option KEY=JSON で設定できます（max_tokens=200、seed=1 など）"
    ),
    "{key} removed": "{key} を削除しました",
    "reasoning: collapsed to one line once the answer starts": (
        "推論：回答が始まったら 1 行に折りたたむ"
    ),
    "reasoning: shown in full, dimmed, before the answer": "推論：回答の前に薄い色ですべて表示",
    "reasoning: hidden": "推論：表示しない",
    "; /reasoning collapse|show|hide changes it": "（/reasoning collapse|show|hide で変更）",
    "no reasoning mode {mode!r}; pick one of: {modes}": (
        "推論の表示モード {mode!r} はありません。次から選んでください：{modes}"
    ),
    "new conversation": "新しい会話",
    "nothing yet in this conversation": "この会話にはまだ何もありません",
    "no answer to copy yet": "コピーできる回答がまだありません",
    "copied {count:,} characters with {how}": "{count:,} 文字を {how} でコピーしました",
    "/save needs a file name, e.g. /save notes.md": (
        "/save にはファイル名が必要です（例：/save notes.md）"
    ),
    "nothing to save yet; ask something first": (
        "保存する内容がまだありません。まず質問してください"
    ),
    "saved {count} messages to {path}": "{count} 件のメッセージを {path} に保存しました",
    "cannot write {path}: {error}; pick another file": (
        "{path} に書き込めません：{error}。別のファイルを指定してください"
    ),
    "multi-line mode: Enter adds a line, Esc-Enter sends; /multi to leave": (
        "複数行モード：Enter で改行、Esc-Enter で送信。/multi で終了"
    ),
    "single-line mode: Enter sends, Esc-Enter adds a line": (
        "1 行モード：Enter で送信、Esc-Enter で改行"
    ),
    # the loop
    "(To quit, press Ctrl-C again or Ctrl-D, or type /exit.)": (
        "（終了するには、もう一度 Ctrl-C を押すか、Ctrl-D を押すか、/exit と入力してください。）"
    ),
    "stopped": "停止しました",
    "nothing to retry yet; ask something first": (
        "やり直す質問がまだありません。まず質問してください"
    ),
    "nothing to continue yet; ask something first": (
        "続ける回答がまだありません。まず質問してください"
    ),
    "there is no answer to continue; ask something": "続ける回答がありません。質問してください",
    "the last answer is complete; /retry answers again": (
        "最後の回答は完結しています。/retry で答え直せます"
    ),
    "continuing the answer…": "回答の続きを生成しています…",
    "continued on {to} after {source} failed": "{source} が失敗したため {to} で続けました",
    "the partial answer is kept; ": "途中までの回答は保存されています。",
    "the answer failed": "回答を生成できませんでした",
    "{message} — {kept}/retry to try again": "{message} — {kept}/retry で再試行できます",
    "/continue carries the answer on": "/continue で回答の続きを生成できます",
    "{model} · waiting {seconds:.1f} s": "{model} · 待機中 {seconds:.1f} 秒",
    "{model} · thinking {seconds:.1f} s": "{model} · 推論中 {seconds:.1f} 秒",
    "Thinking…": "推論中…",
    "Thought for {seconds} s, {words} words": "{seconds} 秒推論しました（{words} 語）",
    "Thought for {seconds} s, 1 word": "{seconds} 秒推論しました（1 語）",
    "(unnamed)": "（名前なし）",
    # starting
    " · {model} · conversations in {where}": " · {model} · 会話の保存先 {where}",
    " · /help for commands, Ctrl-D to quit": " · /help でコマンド一覧、Ctrl-D で終了",
    "untitled": "無題",
    "continuing “{title}” ({id})": "「{title}」の続き（{id}）",
    "No earlier conversation; starting a new one.": (
        "以前の会話はありません。新しい会話を始めます。"
    ),
}

_CATALOGUES: dict[str, Mapping[str, str]] = {"en": {}, "ja": JA}
_language = "en"


def language_from(environ: Mapping[str, str]) -> str:
    """The chat's language for these locale variables: "ja" or "en"."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = environ.get(name, "")
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def use(language: str) -> None:
    """Speak ``language`` from now on (an unknown one: English)."""
    global _language
    _language = language if language in LANGUAGES else "en"


def language() -> str:
    return _language


def t(text: str, /, **params: object) -> str:
    """``text`` in the chat's language, ``{name}`` filled from ``params``."""
    template = _CATALOGUES[_language].get(text, text)
    return template.format(**params) if params else template
