"""`sluice chat` in a pseudo-terminal: a model's reasoning (dimmed, then collapsed to one
line; shown in full; hidden), tool calls drawn with their arguments, and /system and
/temperature kept with the conversation for `chat -c` (the store, and what reaches the
upstream). The screen after an answer is read from tmux, a real terminal emulator: the
collapsed reasoning must be gone from it, not only followed by a summary."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.providers.sim.options import SimOptions
from sluice.providers.sim.script import build_script
from sluice.store.conversations import SQLStore
from sluice.store.database import create_engine, sqlite_url
from sluice.wire.chat_frames import ChatFrames
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess
from tests.term_session import CTRL_D, Terminal, terminal_env

FINAL = r"out tokens · [\d.]+ s"
THOUGHT = r"Thought for [\d.]+ s, \d+ words"
#: The sim's first thought restates the question (providers/sim/reasoning.py).
FIRST_THOUGHT = "The user asks about"
#: Slow enough to watch the reasoning stream in the live region.
THINKING = json.dumps({"ttft_ms": 0, "tokens_per_second": 40, "length": 40})
WEATHER_TOOL = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                },
            },
        }
    ]
)


def test_the_sim_reasons_before_it_answers_and_frames_carry_it() -> None:
    body = {"model": "sim", "messages": [{"role": "user", "content": "Explain SSE retries"}]}
    script = build_script({**body, "temperature": 0}, SimOptions(reasoning=30, length=40))
    events = [e for step in script.steps for e in step]
    frames = ChatFrames("s", "c", "m", "sim")
    kinds = [f["type"] for e in events if (f := frames.frame(e)) is not None]
    first_content = kinds.index("content")
    # Reasoning first, all of it, then the answer; the reasoning is not the answer's text.
    assert set(kinds[:first_content]) == {"reasoning"} and "reasoning" not in kinds[first_content:]
    thought = "".join(
        f["content"] for e in events if (f := frames.frame(e)) and f["type"] == "reasoning"
    )
    assert thought.startswith("The user asks about SSE")
    assert script.usage.details == {
        "completion_tokens_details": {"reasoning_tokens": first_content}
    }
    assert script.usage.completion_tokens == len(kinds) - 1  # every delta but the usage
    # The reasoning comes out of max_tokens, as a model's does.
    short = build_script({**body, "max_tokens": 10}, SimOptions(reasoning=30))
    pieces = [e for step in short.steps[1:-1] for e in step]
    assert len(pieces) == 10 and short.steps[-1][0].reason == "length"  # type: ignore[union-attr]


def test_reasoning_is_dimmed_then_collapsed_shown_or_hidden(tmp_path: Path) -> None:
    env = terminal_env(tmp_path / "data")
    term = Terminal(["chat", "-m", "sim-think", "-o", f"sim={THINKING}"], env, tmp_path)
    try:
        term.wait(r"sim-think › ")
        term.line("How do retries work in SSE?")
        # Streams dimmed under its header while the model thinks…
        term.wait(r"Thinking…")
        term.wait(FIRST_THOUGHT)
        assert re.search(r"\x1b\[2m[^\x1b]*" + FIRST_THOUGHT, term.raw)
        # …then gives way to one line once the answer starts (that it is gone from the
        # screen is checked in tmux below: a byte stream keeps every redraw).
        term.wait(THOUGHT)
        term.wait(FINAL)

        term.wait(r"sim-think › ")
        term.line("/reasoning hide")
        term.wait(r"reasoning: hidden")
        mark = len(term.text)
        term.line("How do retries work in SSE?")
        term.wait(r"sim-think · thinking \d")  # a spinner says so, nothing more
        term.wait(FINAL)
        hidden_turn = term.text[mark:]
        assert FIRST_THOUGHT not in hidden_turn and "Thinking…" not in hidden_turn
        assert "Thought for" not in hidden_turn

        term.wait(r"sim-think › ")
        term.line("/reasoning loud")
        term.wait(r"✗ no reasoning mode 'loud'; pick one of: collapse, show, hide")
        term.line("/reasoning")
        term.wait(r"reasoning: hidden; /reasoning collapse\|show\|hide changes it")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()


class Tmux:
    """`sluice chat` in tmux, whose screen (what a user sees now) can be read."""

    def __init__(self, args: list[str], data_dir: Path, socket_name: str) -> None:
        self.socket = socket_name
        command = " ".join([sys.executable, "-m", "sluice", *(_quoted(a) for a in args)])
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "110", "-y", "45",
                  "-e", f"SLUICE_DATA_DIR={data_dir}", "-e", "TERM=xterm-256color",
                  command + "; sleep 30")  # fmt: skip

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-S", "-", "-t", "t")

    def wait(self, pattern: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, screen := self.screen()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the screen:\n{screen}")
            time.sleep(0.1)
        return screen

    def line(self, text: str) -> None:
        self.tmux("send-keys", "-t", "t", "-l", text)
        self.tmux("send-keys", "-t", "t", "Enter")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], check=False)


def _quoted(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.fixture
def tmux_chat(tmp_path: Path) -> Iterator[Tmux]:
    session = Tmux(
        ["chat", "-m", "sim-think", "-o", f"sim={THINKING}"],
        tmp_path / "data",
        f"sluice-test-{tmp_path.name}",
    )
    try:
        yield session
    finally:
        session.close()


def test_on_screen_the_reasoning_collapses_or_stays(tmux_chat: Tmux) -> None:
    tmux_chat.wait(r"sim-think ›")
    tmux_chat.line("How do retries work in SSE?")
    # While it thinks, the reasoning is on the screen…
    tmux_chat.wait(FIRST_THOUGHT)
    # …and once the answer is written only the one line is left of it.
    screen = tmux_chat.wait(FINAL)
    assert re.search(THOUGHT, screen) and FIRST_THOUGHT not in screen
    before_answer = screen[: screen.index("Thought for")]
    assert "Thinking…" not in before_answer.split("How do retries work in SSE?")[-1]

    tmux_chat.line("/reasoning show")
    tmux_chat.wait(r"reasoning: shown in full")
    tmux_chat.line("Now about WebSockets?")
    screen = tmux_chat.wait(FINAL + r"[\s\S]*" + FINAL)
    shown = screen[screen.index("Now about WebSockets?") :]
    # Kept above the answer, in full, with no summary line instead.
    assert "Thinking…" in shown and FIRST_THOUGHT in shown and "Thought for" not in shown
    assert shown.index(FIRST_THOUGHT) < shown.index("out tokens")


def test_a_tool_call_is_drawn_with_its_arguments(tmp_path: Path) -> None:
    env = terminal_env(tmp_path / "data")
    args = ["chat", "-m", "sim-fast", "-o", f"tools={WEATHER_TOOL}"]
    term = Terminal(args, env, tmp_path, cols=120)
    try:
        term.wait(r"sim-fast › ")
        term.line("What is the weather in Tokyo?")
        found = term.wait(r"⚙ get_weather\((.*)\)")
        assert json.loads(found.group(1)) == {"city": "Tokyo", "days": 1}
        # The arguments are dimmed, the name is not.
        assert re.search(r"get_weather\x1b\[0m\x1b\[2m\(\{", term.raw)
        term.wait(r"sim-fast · .* · tool calls")
        term.wait(r"sim-fast › ")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()


def conversation_settings(data_dir: Path) -> list[tuple[str | None, str | None, dict[str, Any]]]:
    async def read() -> list[tuple[str | None, str | None, dict[str, Any]]]:
        store = SQLStore(create_engine(sqlite_url(data_dir)))
        try:
            return [(c.model, c.system_prompt, c.options) for c in await store.conversations()]
        finally:
            await store.aclose()

    return asyncio.run(read())


def test_system_and_temperature_come_back_with_chat_c(
    tmp_path: Path, upstream: ServerProcess, gateway_config: Path
) -> None:
    data = tmp_path / "data"
    env = terminal_env(data)
    key = new_key()
    config = ["-C", str(gateway_config)]
    pace = {"key": key, "ttft_ms": 0, "tokens_per_second": 0, "length": 20}
    sim = f"sim={json.dumps(pace)}"
    term = Terminal(["chat", *config, "-m", "relay", "-o", sim], env, tmp_path)
    try:
        term.wait(r"relay › ")
        term.line("First question")
        term.wait(FINAL)
        term.wait(r"relay › ")
        term.line("/system Be brief.")
        term.wait(r"system prompt set")
        term.line("/temperature 0.7")
        term.wait(r"temperature: 0\.7")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    # (The first turn's options, here the sim's pacing, are kept with it too.)
    assert conversation_settings(data) == [
        ("relay", "Be brief.", {"temperature": 0.7, "sim": pace})
    ]

    term = Terminal(["chat", *config, "-c", "-o", sim], env, tmp_path)
    try:
        term.wait(r"continuing “First question”")
        term.wait(r"relay › ")
        # The commands show what the conversation keeps…
        term.line("/system")
        term.wait(r"system prompt: Be brief\.")
        term.line("/temperature")
        term.wait(r"temperature: 0\.7")
        # …and the next question goes out with it.
        term.line("Second question")
        term.wait(FINAL)
        term.wait(r"relay › ")
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()
    saw = upstream_saw(upstream, key)
    assert saw["prompts"] == ["First question", "Second question"]
    assert saw["temperatures"] == [None, 0.7]
    assert saw["roles"][1] == ["system", "user", "assistant", "user"]
    assert conversation_settings(data) == [
        ("relay", "Be brief.", {"temperature": 0.7, "sim": pace})
    ]


def test_reasoning_through_a_gateway_and_its_upstream(
    tmp_path: Path, gateway: ServerProcess
) -> None:
    """A relayed model's reasoning (``reasoning_content`` from the upstream) reaches the
    terminal through the chat API."""
    env = terminal_env(tmp_path / "data")
    thinking = json.dumps({"reasoning": 30, "length": 20})
    term = Terminal(["chat", "--url", gateway.url, "-m", "relay", "-o", f"sim={thinking}"],
                    env, tmp_path)  # fmt: skip
    try:
        term.wait(r"relay › ")
        term.line("Explain backpressure")
        term.wait(THOUGHT)
        term.wait(FINAL)
        term.send(CTRL_D)
        assert term.exit_code() == 0
    finally:
        term.close()


def test_thoughts_and_tool_calls_render_apart_from_the_answer() -> None:
    import io

    from rich.console import Console

    from sluice.cli.thinking import Thoughts
    from sluice.cli.tool_calls import ToolCalls

    console = Console(file=io.StringIO(), width=60, height=20)
    shown = Thoughts("show")
    printed = shown.add("First line.\nSecond")
    assert [str(p) for p in printed] == ["Thinking…", "First line."]
    assert str(shown.live(console, 4)) == "Second"
    assert [str(p) for p in shown.end()] == ["Second", ""]
    assert shown.end() == [] and shown.add("late") == []  # after the answer started

    collapsed = Thoughts("collapse")
    assert collapsed.add("one two three\n" * 50) == []  # nothing printed for good
    live = collapsed.live(console, 3)
    assert live is not None
    [summary] = collapsed.end()
    assert re.fullmatch(r"Thought for [\d.]+ s, 150 words", str(summary))
    hidden = Thoughts("hide")
    assert hidden.add("secret") == [] and hidden.live(console, 3) is None and hidden.end() == []
    with pytest.raises(ValueError, match="reasoning mode"):
        Thoughts("loud")

    calls = ToolCalls()
    calls.add({"index": 0, "id": "call_1", "name": "lookup", "arguments": ""})
    calls.add({"index": 0, "arguments": '{"q": "a\\u001b[2Jb", "n": '})
    calls.add({"index": 0, "arguments": "1}"})
    calls.add({"index": 1, "name": "cut", "arguments": '{"x": "unfinis\x1b[2J'})
    first, second = calls.lines(60)
    # A control character in the arguments is shown, never sent to the terminal: escaped
    # again in JSON, or as ^[ in arguments that are not JSON (a call cut off).
    assert str(first) == '⚙ lookup({"q": "a\\u001b[2Jb", "n": 1})'
    assert str(second) == '⚙ cut({"x": "unfinis^[[2J)'
    long = {"index": 0, "name": "big", "arguments": json.dumps({f"k{i}": i for i in range(60)})}
    tall = ToolCalls()
    tall.add(long)
    [drawn] = tall.lines(60)
    lines = str(drawn).splitlines()
    assert lines[0] == "⚙ big({" and len(lines) == 40
    assert lines[-2:] == ["  … (24 more lines)", ")"]
