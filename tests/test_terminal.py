"""`sluice chat` in a real pseudo-terminal: streaming, Ctrl-C stopping an answer (and the
upstream seeing it), /retry, a drop mid-answer, history kept and continued, multi-line
input, the / commands, in-process and against a running gateway. Plus the renderer's
promise: finished lines are drawn once, and redraws are bounded however fast tokens come.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sluice.cli.answer import FPS, LiveAnswer
from sluice.cli.blocks import BlockSplitter, CodeLine, FenceClose, FenceOpen, Line, TableRows
from sluice.store.conversations import Message, SQLStore
from sluice.store.database import create_engine, sqlite_url
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess
from tests.term_session import (
    CTRL_C,
    CTRL_D,
    ENTER,
    ESC_ENTER,
    UP,
    CuttableProxy,
    Terminal,
    invoke,
    plain,
    sluice,
    terminal_env,
)

FINAL = r"out tokens · [\d.]+ s"  # the status line left under a finished answer


def sim(**options: Any) -> str:
    return "sim=" + json.dumps(options)


def wait_until(check: Any, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def stored(data_dir: Path) -> list[list[Message]]:
    """Every conversation in the store of ``data_dir``, newest first: its shown branch."""

    async def read() -> list[list[Message]]:
        store = SQLStore(create_engine(sqlite_url(data_dir)))
        try:
            found = await store.conversations()
            return [await store.path(c.id) for c in found]
        finally:
            await store.aclose()

    return asyncio.run(read())


def versions(data_dir: Path, message: Message) -> int:
    async def count() -> int:
        store = SQLStore(create_engine(sqlite_url(data_dir)))
        try:
            return len(await store.siblings(message.id))
        finally:
            await store.aclose()

    return asyncio.run(count())


def test_chat_streams_stops_retries_and_continues_next_session(
    tmp_path: Path, upstream: ServerProcess, gateway_config: Path
) -> None:
    data = tmp_path / "data"
    env = terminal_env(data)
    slow, dropping, fast = new_key(), new_key(), new_key()
    config = ["-C", str(gateway_config)]
    options = sim(key=slow, ttft_ms=500, tokens_per_second=15, length=400)
    term = Terminal(["chat", *config, "-m", "relay", "-o", options], env, tmp_path)
    try:
        term.wait(r"sluice chat · relay · conversations in .*sluice\.db")
        term.wait(r"relay › ")
        term.line("Explain streaming backpressure")
        # A spinner until the first token, then the numbers, growing as tokens stream in.
        term.wait(r"relay · waiting \d")
        status = r"relay · ttft 0\.\d+ s · [\d.]+ tok/s · (\d+) tokens"
        first = int(term.wait(status).group(1))
        while int(term.wait(status).group(1)) < first + 4:
            pass
        assert "relay · ttft" in term.text

        # Ctrl-C stops the answer, the upstream sees the disconnect, the prompt is back.
        term.send(CTRL_C)
        term.wait(r"· stopped")
        term.wait(r"relay › ")
        seen = wait_until(lambda: upstream_saw(upstream, slow)["disconnected"])
        assert seen == 1 and upstream_saw(upstream, slow)["completed"] == 0

        # A drop mid-answer keeps the partial text and offers /retry.
        term.line("/option " + sim(key=dropping, ttft_ms=0, tokens_per_second=0, drop_after=12))
        term.wait(r"sim = \{")
        term.line("/retry")
        term.wait(r"✗ upstream [\s\S]+ — the partial answer is kept; /retry to try again")
        term.wait(r"relay › ")

        # /retry answers again (a new version), with a system prompt set on the way.
        term.line("/system Answer like a pirate.")
        term.wait(r"system prompt set")
        term.line("/option " + sim(key=fast, ttft_ms=0, tokens_per_second=0, length=30))
        term.line("/retry")
        term.wait(FINAL)
        term.wait(r"relay › ")
        saw = upstream_saw(upstream, fast)
        assert saw["completed"] == 1 and saw["roles"][0] == ["system", "user"]
        assert saw["prompts"] == ["Explain streaming backpressure"]

        term.line("/history")
        term.wait(r"› Explain streaming backpressure")
        term.wait(r"relay · version 3 of 3")
        term.line(f"/save {tmp_path / 'saved.md'}")
        term.wait(r"saved 2 messages to .*saved\.md")
        term.line("/exit")
        assert term.exit_code() == 0
    finally:
        term.close()
    saved = (tmp_path / "saved.md").read_text()
    assert saved.startswith("# Explain streaming backpressure") and "## You" in saved

    # The next session continues the conversation, with the same model, and the input
    # history of the last one (Up recalls it).
    term = Terminal(["chat", *config, "-c"], env, tmp_path)
    try:
        term.wait(r"continuing “Explain streaming backpressure”")
        term.wait(r"relay › ")
        term.send(UP)
        term.wait(r"/exit")
        term.send(CTRL_C)  # a line with text on it is cleared, nothing else
        term.line("/model relay-echo")
        term.wait(r"model: relay-echo")
        term.wait(r"relay-echo › ")
        term.line("And the second question?")
        term.wait(FINAL)
        term.wait(r"relay-echo › ")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    [messages] = stored(data)
    contents = [(m.role, m.content) for m in messages]
    assert contents[0] == ("user", "Explain streaming backpressure")
    assert versions(data, messages[1]) == 3 and messages[1].status == "complete"
    assert contents[2:] == [
        ("user", "And the second question?"),
        ("assistant", "And the second question?"),
    ]


def test_multiline_input_keys_and_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"
    options = sim(ttft_ms=0, tokens_per_second=0)
    term = Terminal(["chat", "-m", "sim-echo", "-o", options], terminal_env(data), tmp_path)
    try:
        term.wait(r"sim-echo › ")
        # A paste is kept whole: its newlines do not send it.
        term.paste("alpha line\nbeta line")
        term.send(ENTER)
        term.wait(r"alpha line\s+beta line")  # the echo
        term.wait(FINAL)
        term.wait(r"sim-echo › ")
        # Esc-Enter adds a line.
        term.send("gamma" + ESC_ENTER + "delta" + ENTER)
        term.wait(FINAL)
        term.wait(r"sim-echo › ")
        # Multi-line mode: Enter adds a line, Esc-Enter sends; a /command runs on Enter.
        term.line("/multi")
        term.wait(r"multi-line mode")
        term.send("one" + ENTER + "two" + ESC_ENTER)
        term.wait(FINAL)
        term.wait(r"sim-echo ⋯ ")
        term.line("/multi")
        term.wait(r"single-line mode")
        term.wait(r"sim-echo › ")

        # Ctrl-C on an empty line says how to quit.
        term.send(CTRL_C)
        term.wait(r"To quit, press Ctrl-C again or Ctrl-D, or type /exit")

        term.line("/copy")
        term.wait(r"copied 7 characters with the terminal \(OSC 52\)")
        assert "\x1b]52;c;" + base64.b64encode(b"one\ntwo").decode() in term.raw

        for command, answer in [
            ("/temperature 0.3", r"temperature: 0\.3"),
            ("/temperature 7", r"✗ temperature '7' is not a number from 0 to 2"),
            ("/model", r"● sim-echo"),
            ("/model nope", r"✗ no model 'nope'; pick one of: sim, sim-echo, sim-fast, sim-think"),
            ("/sytem hi", r"✗ unknown command /sytem; /help lists them"),
            ("/help", r"/save FILE\s+save this conversation"),
            ("/save", r"✗ /save needs a file name"),
        ]:
            term.line(command)
            term.wait(answer)
            term.wait(r"sim-echo › ")
        term.line("/new")
        term.wait(r"new conversation")
        term.line("//slash at the start")
        term.wait(FINAL)
        term.send(CTRL_C)
        term.wait(r"To quit")
        term.send(CTRL_C)  # twice: quit
        assert term.exit_code() == 0
    finally:
        term.close()
    second, first = stored(data)
    questions = [m.content for m in first if m.role == "user"]
    assert questions == ["alpha line\nbeta line", "gamma\ndelta", "one\ntwo"]
    assert [m.content for m in second] == ["/slash at the start"] * 2  # /new, then an echo


async def _conversations(url: str) -> Any:
    def get() -> Any:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)

    return await asyncio.to_thread(get)


def test_chat_against_a_running_gateway(
    tmp_path: Path, gateway: ServerProcess, upstream: ServerProcess
) -> None:
    data = tmp_path / "data"
    key, marker = new_key(), new_key()
    env = terminal_env(data)
    options = sim(key=key, ttft_ms=0, tokens_per_second=20, length=400)
    term = Terminal(["chat", "--url", gateway.url, "-m", "relay", "-o", options], env, tmp_path)
    try:
        term.wait(rf"relay · conversations in {re.escape(gateway.url)}")
        term.wait(r"relay › ")
        term.line(f"Plan a trip {marker}")
        term.wait(r"relay · ttft .* (\d+) tokens")
        # Stop through the gateway: POST /v1/streams/{id}/cancel.
        term.send(CTRL_C)
        term.wait(r"· stopped")
        term.wait(r"relay › ")
        assert wait_until(lambda: upstream_saw(upstream, key)["disconnected"]) == 1
        term.line("/model relay-echo")
        term.line("Second thought")
        term.wait(FINAL)
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    # The gateway stored it: the web page and `history --url` see the same conversation.
    found = asyncio.run(_conversations(f"{gateway.url}/v1/conversations?q={marker}"))["data"]
    assert len(found) == 1
    detail = asyncio.run(_conversations(f"{gateway.url}/v1/conversations/{found[0]['id']}"))
    statuses = [(m["role"], m["status"]) for m in detail["messages"]]
    assert statuses[1] == ("assistant", "incomplete")
    assert detail["messages"][3]["content"] == "Second thought"
    shown = sluice("history", "show", found[0]["id"][:10], "--url", gateway.url, env=env)
    assert shown.returncode == 0 and f"Plan a trip {marker}" in shown.stdout


def test_a_dropped_connection_is_resumed_or_keeps_the_partial_answer(
    tmp_path: Path, gateway: ServerProcess
) -> None:
    proxy = CuttableProxy(gateway.port)
    env = terminal_env(tmp_path / "data")
    options = sim(ttft_ms=0, tokens_per_second=25)
    term = Terminal(["chat", "--url", proxy.url, "-m", "relay-echo", "-o", options], env, tmp_path)
    marker = new_key()
    message = f"{marker} two three four five six seven eight nine ten eleven twelve thirteen"
    try:
        term.wait(r"relay-echo › ")
        term.line(message)
        term.wait(r"relay-echo · ttft .* tokens")
        proxy.cut()
        # Picked up where it stopped (GET /v1/streams/{id}?after=N): all of it, once.
        term.wait(re.escape(message) + r"\n")
        term.wait(FINAL)
        term.wait(r"relay-echo › ")
        # The live region repaints the unfinished line while the stream is resumed, so
        # count what a replay would add instead: the answer running on into itself.
        assert not re.search(r"thirteen *" + re.escape(marker), term.text)
        found = asyncio.run(_conversations(f"{gateway.url}/v1/conversations?q={marker}"))
        (conversation,) = found["data"]
        detail = asyncio.run(_conversations(f"{gateway.url}/v1/conversations/{conversation['id']}"))
        assert [m["content"] for m in detail["messages"]] == [message, message]

        # When the gateway cannot be reached again, the partial answer stays on screen
        # and /retry is offered.
        term.line("Once more, with feeling: " + message)
        term.wait(r"relay-echo · ttft .* tokens")
        proxy.down = True
        proxy.cut()
        term.wait(
            r"✗ the connection to the gateway dropped mid-answer \(.+\) — the partial "
            r"answer is kept;\s+/retry\s+to\s+try\s+again"
        )
        term.wait(r"relay-echo › ")
        proxy.down = False
        term.line("/retry")
        term.wait(FINAL)
        term.wait(r"relay-echo › ")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
        proxy.close()


def saved_settings(data_dir: Path) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    """(model, system prompt, options) of every conversation in ``data_dir``'s store."""

    async def read() -> list[tuple[str | None, str | None, dict[str, Any]]]:
        store = SQLStore(create_engine(sqlite_url(data_dir)))
        try:
            return [(c.model, c.system_prompt, c.options) for c in await store.conversations()]
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_model_system_and_temperature_are_kept_with_the_conversation(
    tmp_path: Path, gateway: ServerProcess
) -> None:
    data = tmp_path / "data"
    env = terminal_env(data)
    term = Terminal(["chat", "-m", "sim"], env, tmp_path)
    try:
        term.wait(r"sim › ")
        term.line("Hello there")
        term.wait(FINAL)
        term.wait(r"sim › ")
        term.line("/model sim-echo")
        term.wait(r"sim-echo › ")
        term.line("/system Be brief.")
        term.wait(r"system prompt set")
        term.line("/temperature 0.5")
        term.wait(r"temperature: 0\.5")
        term.line("/exit")
        assert term.exit_code() == 0
    finally:
        term.close()
    assert saved_settings(data) == [("sim-echo", "Be brief.", {"temperature": 0.5})]
    # The next session continues with the model it was switched to.
    term = Terminal(["chat", "-c"], env, tmp_path)
    try:
        term.wait(r"continuing “Hello there”")
        term.wait(r"sim-echo › ")
        term.line("/temperature default")
        term.wait(r"temperature: the model's default")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    assert saved_settings(data) == [("sim-echo", "Be brief.", {})]

    # Against a running gateway: the same, through PATCH /v1/conversations/{id}.
    marker = new_key()
    term = Terminal(["chat", "--url", gateway.url, "-m", "sim"], env, tmp_path)
    try:
        term.wait(r"sim › ")
        term.line(f"Remember {marker}")
        term.wait(FINAL)
        term.wait(r"sim › ")
        term.line("/model relay-echo")
        term.wait(r"relay-echo › ")
        term.line("/temperature 0.3")
        term.wait(r"temperature: 0\.3")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    found = asyncio.run(_conversations(f"{gateway.url}/v1/conversations?q={marker}"))["data"]
    assert [(c["model"], c["options"]) for c in found] == [("relay-echo", {"temperature": 0.3})]


def test_chat_usage_errors_are_one_line(tmp_path: Path, gateway_config: Path) -> None:
    env = terminal_env(tmp_path / "data")
    term = Terminal(["chat", "-m", "nope", "-C", str(gateway_config)], env, tmp_path)
    assert term.exit_code() == 2
    assert re.search(r"^sluice: error: no model 'nope'; pick one of: sim, relay", term.text, re.M)
    result = invoke("chat", data_dir=tmp_path)  # not a terminal
    assert result.exit_code == 2
    assert result.stderr == (
        "sluice: error: sluice chat needs a terminal; for pipes and scripts use `sluice ask`\n"
    )


# -- the renderer, without a terminal --------------------------------------------------


def test_block_splitter_finishes_lines_code_and_tables() -> None:
    splitter = BlockSplitter()
    text = "# Title\nSome *text*\n```py\nx = 1\n```\n| a | b |\n|---|---|\n| 1 | 2 |\nafter"
    pieces = []
    for start in range(0, len(text), 3):  # any split of the stream gives the same pieces
        pieces += splitter.feed(text[start : start + 3])
    assert splitter.partial == "after"
    pieces += splitter.close()
    assert pieces == [
        Line("# Title"),
        Line("Some *text*"),
        FenceOpen("py"),
        CodeLine("x = 1", "py"),
        FenceClose("py"),
        TableRows(("| a | b |", "|---|---|", "| 1 | 2 |")),
        Line("after"),
    ]
    unclosed = BlockSplitter()
    assert unclosed.feed("```\ncode\n") == [FenceOpen(""), CodeLine("code", "")]
    assert unclosed.close() == [FenceClose("")]


@pytest.mark.parametrize("tokens_per_second", [0, 1000])
async def test_finished_lines_are_drawn_once_and_redraws_are_bounded(
    tokens_per_second: float,
) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=24, color_system="256")
    lines = [f"Line number {n} of the answer, long enough to matter." for n in range(80)]
    text = "\n".join(lines) + "\n```python\nprint('done')\n```\n"
    answer = LiveAnswer(console, "sim")
    started = time.monotonic()
    async with answer:
        for token in re.findall(r"\S*\s*", text):
            answer.add(token)
            await asyncio.sleep(1 / tokens_per_second if tokens_per_second else 0)
    elapsed = time.monotonic() - started
    screen = plain(out.getvalue())
    for line in lines:
        # Each finished line is printed exactly once (the tail is redrawn, not history).
        assert screen.count(line + "\n") == 1, line
    assert "print('done')" in screen
    assert answer.refreshes <= elapsed * FPS + 3


def test_history_commands(tmp_path: Path) -> None:
    data = tmp_path / "data"

    async def fill() -> list[str]:
        from sluice.chat.service import ChatService, parse_turn
        from sluice.engine.engine import Engine
        from sluice.settings import Settings
        from sluice.store.database import migrate

        engine = Engine(Settings.load(data_dir=data))
        store = SQLStore(create_engine(sqlite_url(data)))
        await migrate(store.engine)
        chat = ChatService(engine, store)
        ids = []
        for question in ("Plan a weekend in Kyoto", "京都の紅葉はいつ", "Explain SSE"):
            turn = await chat.start(parse_turn({"message": question, "model": "sim-fast"}))
            await turn.generation.wait()
            ids.append(str(turn.conversation_id))
        await chat.settle()
        await engine.aclose()
        await store.aclose()
        return ids

    kyoto, japanese, sse = asyncio.run(fill())
    listed, searched, shown, as_json, unknown = (
        invoke("history", *args, data_dir=data)
        for args in (
            ["list"],
            ["search", "KYOTO"],
            ["show", kyoto[:8]],
            ["export", japanese, "--format", "json"],
            ["show", "f" * 24],
        )
    )
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[0] for row in rows] == [sse, japanese, kyoto]  # newest first
    assert rows[2][2:] == ["sim-fast", "Plan a weekend in Kyoto"]
    assert [line.split("\t")[0] for line in searched.stdout.splitlines()] == [kyoto]
    assert shown.stdout.startswith("# Plan a weekend in Kyoto\n")
    assert "## You\n\nPlan a weekend in Kyoto\n\n## sim-fast\n" in shown.stdout
    exported = json.loads(as_json.stdout)
    assert exported["id"] == japanese and exported["messages"][0]["content"] == "京都の紅葉はいつ"
    assert exported["messages"][1]["status"] == "complete"
    assert unknown.exit_code == 2
    assert unknown.stderr == (
        "sluice: error: No conversation with id 'ffffffffffffffffffffffff'; "
        "list them with `sluice history list`\n"
    )


def test_continue_carries_on_a_cut_off_or_stopped_answer(
    tmp_path: Path, gateway_config: Path
) -> None:
    data = tmp_path / "data"
    env = terminal_env(data)
    config = ["-C", str(gateway_config)]
    term = Terminal(["chat", *config, "-m", "sim", "-o", "max_tokens=10"], env, tmp_path)
    try:
        term.wait(r"sim › ")
        term.line("/continue")
        term.wait(r"✗ nothing to continue yet")
        term.line("Tell me a long story")
        term.wait(r"cut off at max tokens")
        term.wait(r"/continue carries the answer on")
        term.wait(r"sim › ")
        ((_, cut),) = stored(data)
        assert cut.finish_reason == "length"
        term.line("/continue")
        term.wait(r"continuing the answer…")
        term.wait(r"cut off at max tokens")
        term.wait(r"sim › ")
        ((question, grown),) = stored(data)
        assert grown.id == cut.id, "the same message"
        assert grown.content.startswith(cut.content) and len(grown.content) > len(cut.content)
        # A stopped answer carries on too; a complete one is refused.
        term.line("/option max_tokens=2000")
        term.line("/option " + sim(tokens_per_second=15, length=300))
        term.line("Another one")
        term.wait(r"sim · ttft .* (\d+) tokens")
        term.send(CTRL_C)
        term.wait(r"· stopped")
        term.wait(r"sim › ")
        stopped = wait_until(lambda: stored(data)[0][-1].status == "incomplete" and stored(data))
        before = stopped[0][-1]
        term.line("/option " + sim(tokens_per_second=0, length=20))
        term.line("/continue")
        term.wait(FINAL)
        term.wait(r"sim › ")
        after = wait_until(lambda: stored(data)[0][-1].status == "complete" and stored(data))
        assert after[0][-1].id == before.id and after[0][-1].content.startswith(before.content)
        assert len(after[0]) == 4
        term.line("/continue")
        term.wait(r"✗ the last answer is complete; /retry answers again")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    assert question.role == "user"
