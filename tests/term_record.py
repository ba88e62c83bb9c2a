"""Record a real `sluice chat` session for the docs: ``python -m tests.term_record``.

- ``docs/terminal.cast``: an asciinema v2 recording of the session (output with its
  timing), driven through a pseudo-terminal with pexpect;
- ``docs/terminal.svg``: the same session run in tmux (a real terminal emulator), its
  screen and scrollback captured with their colours and drawn by rich.

Both use the built-in simulated model, in-process, with a throwaway data directory:
``sim-think``, which reasons before it answers (the reasoning streams dimmed, then
collapses to one line), asked for a table; then a slash command, and a second question
stopped with Ctrl-C.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

from tests.term_session import CTRL_C, CTRL_D, Terminal, terminal_env

DOCS = Path(__file__).resolve().parent.parent / "docs"
COLS, ROWS = 100, 42
MODEL = "sim-think"
PROMPT = f"{MODEL} ›"
PACE = '{"ttft_ms": 600, "tokens_per_second": 45, "length": 240, "reasoning": 50}'
#: The simulated answer is chosen by the seed (a table comes first: it is asked for).
SEED = "20"
QUESTION = "Retry strategies for a flaky HTTP call in Python: show me a table"
COMMAND = "/temperature 0.3"
SECOND = "And in Go?"


def record_cast(data_dir: Path, out: Path) -> None:
    env = terminal_env(data_dir)
    args = ["chat", "-m", MODEL, "-o", f"sim={PACE}", "-o", f"seed={SEED}"]
    term = Terminal(args, env, data_dir, rows=ROWS, cols=COLS)
    events: list[tuple[float, str]] = []
    started = time.monotonic()
    seen = 0

    def capture(pattern: str, timeout: float = 60) -> None:
        nonlocal seen
        term.wait(pattern, timeout)
        if len(term.raw) > seen:
            events.append((time.monotonic() - started, term.raw[seen:]))
            seen = len(term.raw)

    def pump(seconds: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            term._pump(0.03)
            if len(term.raw) > seen:
                events.append((time.monotonic() - started, term.raw[seen:]))
                seen = len(term.raw)

    def type_text(text: str) -> None:
        for char in text:
            term.send(char)
            pump(0.045)

    capture(PROMPT + " ")
    pump(0.8)
    type_text(QUESTION)
    term.send("\r")
    while not term.text.rstrip().endswith(PROMPT):
        pump(0.1)
    pump(1.0)
    type_text(COMMAND)
    term.send("\r")
    pump(1.2)
    type_text(SECOND)
    term.send("\r")
    pump(2.5)
    term.send(CTRL_C)  # stop this answer
    pump(1.2)
    term.send(CTRL_D)
    pump(1.0)
    term.close()
    header = {
        "version": 2,
        "width": COLS,
        "height": ROWS,
        "timestamp": int(time.time()),
        "title": "sluice chat",
        "env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"},
    }
    lines = [json.dumps(header)] + [
        json.dumps([round(at, 3), "o", data], ensure_ascii=False) for at, data in events
    ]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")


def tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", "sluice-record", *args], capture_output=True, text=True, check=True
    ).stdout


def record_svg(data_dir: Path, out: Path) -> None:
    env = terminal_env(data_dir)
    env.pop("PROMPT_TOOLKIT_NO_CPR", None)  # tmux answers cursor-position requests
    command = f"{sys.executable} -m sluice chat -m {MODEL} -o 'sim={PACE}' -o seed={SEED}; sleep 60"
    tmux("-f", "/dev/null", "new-session", "-d", "-s", "rec", "-x", str(COLS), "-y", str(ROWS),
         "-e", f"SLUICE_DATA_DIR={env['SLUICE_DATA_DIR']}", "-e", "TERM=xterm-256color",
         command)  # fmt: skip
    try:

        def screen() -> str:
            return tmux("capture-pane", "-p", "-t", "rec")

        def wait(text: str, timeout: float = 60) -> None:
            deadline = time.monotonic() + timeout
            while text not in screen():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{text!r} not on screen:\n{screen()}")
                time.sleep(0.1)

        wait(PROMPT)
        tmux("send-keys", "-t", "rec", "-l", QUESTION)
        tmux("send-keys", "-t", "rec", "Enter")
        wait("out tokens")
        tmux("send-keys", "-t", "rec", "-l", COMMAND)
        tmux("send-keys", "-t", "rec", "Enter")
        wait("temperature: 0.3")
        tmux("send-keys", "-t", "rec", "-l", SECOND)
        tmux("send-keys", "-t", "rec", "Enter")
        time.sleep(2.5)
        tmux("send-keys", "-t", "rec", "C-c")
        wait("stopped")
        time.sleep(0.5)
        # The whole session, scrollback included.
        captured = tmux("capture-pane", "-p", "-e", "-S", "-", "-t", "rec")
    finally:
        subprocess.run(["tmux", "-L", "sluice-record", "kill-server"], check=False)
    console = Console(
        record=True, width=COLS, force_terminal=True, color_system="truecolor", file=io.StringIO()
    )
    lines = captured.rstrip().split("\n")
    console.print(Text("\n").join(Text.from_ansi(line) for line in lines))
    console.save_svg(str(out), title="sluice chat")


def main() -> None:
    # A short, stable path: it shows in the banner.
    demo = Path(tempfile.gettempdir()) / "sluice-demo"
    for name, record, out in (
        ("cast", record_cast, DOCS / "terminal.cast"),
        ("svg", record_svg, DOCS / "terminal.svg"),
    ):
        shutil.rmtree(demo, ignore_errors=True)
        demo.mkdir()
        record(demo, out)
        print(f"wrote {out} ({name})")
    shutil.rmtree(demo, ignore_errors=True)


if __name__ == "__main__":
    main()
