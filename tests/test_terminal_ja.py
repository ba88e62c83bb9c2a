"""`sluice chat` speaks the locale's language: with LANG=ja_JP.UTF-8 its own words (the
banner, /help, notes and errors) are Japanese, in a real pseudo-terminal; the model's
text is not translated. And the catalogue picks its language as POSIX says."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from sluice.cli import messages
from tests.term_session import CTRL_D, Terminal, terminal_env

FINAL = r"out tokens · [\d.]+ s"


def japanese_env(data: Path) -> dict[str, str]:
    env = terminal_env(data, LANG="ja_JP.UTF-8")
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        env.pop(name, None)
    return env


def test_chat_in_japanese(tmp_path: Path) -> None:
    term = Terminal(["chat", "-m", "sim-echo"], japanese_env(tmp_path / "data"), tmp_path)
    try:
        term.wait(r"sluice chat · sim-echo · 会話の保存先 ")
        term.wait(r"でコマンド一覧、Ctrl-D で終了")
        term.wait(r"sim-echo › ")
        term.line("/help")
        term.wait(r"/model \[NAME\]\s+モデルの一覧を表示、または NAME に切り替え")
        term.wait(r"/save FILE\s+この会話を Markdown で保存")
        term.wait(r"Ctrl-D\s+終了")
        term.wait(r"sim-echo › ")
        for command, answer in [
            ("/temperature 0.3", r"温度：0\.3"),
            ("/temperature 7", r"✗ 温度 '7' は 0〜2 の数値ではありません"),
            ("/model nope", r"✗ モデル 'nope' はありません。次から選んでください：sim, sim-echo"),
            ("/sytem hi", r"✗ /sytem というコマンドはありません。/help で一覧を表示します"),
            ("/m", r"/model、/multi のことですか？"),
            ("/save", r"✗ /save にはファイル名が必要です"),
            ("/new", r"新しい会話"),
        ]:
            term.line(command)
            term.wait(answer)
            term.wait(r"sim-echo › ")
        # The model's words stay as they are.
        term.line("hello there")
        term.wait(r"hello there")
        term.wait(FINAL)
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({"LANG": "ja_JP.UTF-8"}, "ja"),
        ({"LANG": "ja_JP.eucJP"}, "ja"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({}, "en"),
        ({"LANG": "ja_JP.UTF-8", "LC_ALL": "C.UTF-8"}, "en"),  # LC_ALL wins
        ({"LANG": "en_GB.UTF-8", "LC_MESSAGES": "ja_JP.UTF-8"}, "ja"),
        ({"LANG": "ja_JP.UTF-8", "LC_MESSAGES": ""}, "ja"),  # empty: not set
    ],
)
def test_language_follows_the_locale(environ: dict[str, str], language: str) -> None:
    assert messages.language_from(environ) == language


def test_catalogue_falls_back_to_english_and_fills_parameters() -> None:
    try:
        messages.use("ja")
        assert messages.t("model: {name}", name="sim") == "モデル：sim"
        assert messages.t("a sentence with no entry {x}", x=1) == "a sentence with no entry 1"
        messages.use("fr")
        assert messages.language() == "en"
        assert messages.t("model: {name}", name="sim") == "model: sim"
    finally:
        messages.use("en")
    # Every Japanese entry takes the same parameters as its English template.
    for english, japanese in messages.JA.items():
        names = {f[1] for f in string.Formatter().parse(english) if f[1]}
        assert names == {f[1] for f in string.Formatter().parse(japanese) if f[1]}, english
