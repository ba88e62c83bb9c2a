"""One answer on the terminal as it streams.

``LiveAnswer`` prints every finished markdown piece once (``blocks.py`` decides what is
finished, ``render.py`` draws it) and keeps only the unfinished tail and a status line
in a small transient ``rich.live`` region. The screen is updated by one ticker at most
``FPS`` times a second however fast tokens arrive, so a fast model costs no more
terminal writes than a slow one, and nothing already printed is ever drawn again.

``RawAnswer`` is the same interface writing the text as it comes, with no markup and no
escape sequences: for pipes and ``--raw``.

The status line shows a spinner until the first token, then time to first token,
tokens per second and tokens (N/A while unknown). Reasoning, when the model streams it,
comes first, dimmed (``thinking.py``: shown, hidden, or collapsed to one line once the
answer starts); tool calls are drawn after the text (``tool_calls.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from sluice.cli.blocks import BlockSplitter, Piece
from sluice.cli.messages import t
from sluice.cli.render import PieceRenderer, visible
from sluice.cli.thinking import DEFAULT_MODE, Thoughts
from sluice.cli.tool_calls import ToolCalls

FPS = 12
#: Lines of reasoning the live region shows while the model thinks (the latest ones).
THINKING_ROWS = 6


@dataclass
class AnswerStats:
    model: str
    started: float
    first_token: float | None = None
    ended: float | None = None
    #: Text chunks received: the token count until the usage arrives.
    chunks: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    estimated: bool = False
    finish_reason: str | None = None

    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started

    def tokens(self) -> int | None:
        if self.completion_tokens is not None:
            return self.completion_tokens
        return self.chunks or None

    def tokens_per_second(self, now: float | None = None) -> float | None:
        end = self.ended or now or time.monotonic()
        tokens = self.tokens()
        if self.first_token is None or not tokens or tokens < 2:
            return None
        elapsed = end - self.first_token
        # The first token starts the clock; the rest arrived within it.
        return (tokens - 1) / elapsed if elapsed > 0.05 else None

    def line(self, *, final: bool) -> Text:
        ttft, rate, tokens = self.ttft(), self.tokens_per_second(), self.tokens()
        parts = [self.model, f"ttft {_seconds(ttft)}", f"{_number(rate)} tok/s"]
        if final and self.completion_tokens is not None:
            mark = "~" if self.estimated else ""
            prompt = f"{mark}{self.prompt_tokens} in · " if self.prompt_tokens is not None else ""
            parts.append(f"{prompt}{mark}{self.completion_tokens} out tokens")
        else:
            parts.append(f"{tokens if tokens is not None else 'N/A'} tokens")
        if final and self.ended is not None:
            parts.append(f"{self.ended - self.started:.1f} s")
        if final and self.finish_reason not in (None, "stop"):
            parts.append(_REASONS.get(self.finish_reason or "", self.finish_reason or ""))
        return Text(" · ".join(parts), style="dim", no_wrap=True, overflow="ellipsis")


_REASONS = {"incomplete": "stopped", "length": "cut off at max tokens", "tool_calls": "tool calls"}


def _seconds(value: float | None) -> str:
    return "N/A" if value is None else f"{value:.2f} s"


def _number(value: float | None) -> str:
    return "N/A" if value is None else f"{value:.1f}"


class Answer(Protocol):
    stats: AnswerStats

    async def __aenter__(self) -> Answer: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def add(self, text: str) -> None: ...

    def usage(self, prompt: int, completion: int, *, estimated: bool = False) -> None: ...

    def text(self) -> str: ...


class LiveAnswer:
    def __init__(
        self,
        console: Console,
        model: str,
        *,
        summary: bool = True,
        started: float | None = None,
        reasoning: str = DEFAULT_MODE,
    ) -> None:
        self.console = console
        #: ``started``: when the request went out (time.monotonic), for the TTFT.
        self.stats = AnswerStats(model, started or time.monotonic())
        self._summary = summary
        self.thoughts = Thoughts(reasoning)
        self.tool_calls = ToolCalls()
        self._splitter = BlockSplitter()
        self._renderer = PieceRenderer()
        self._pending: list[RenderableType] = []
        self._parts: list[str] = []
        self._dirty = True
        self._live = Live(
            console=console,
            auto_refresh=False,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._ticker: asyncio.Task[None] | None = None
        #: Screen updates made, for tests that check redraws stay bounded.
        self.refreshes = 0

    async def __aenter__(self) -> LiveAnswer:
        self._live.start()
        self._draw()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        self.stats.ended = self.stats.ended or time.monotonic()
        self._pending.extend(self.thoughts.end())
        self._commit(self._splitter.close())
        if self.tool_calls:
            self._pending.extend(self.tool_calls.lines(self.console.width))
        self._show(Text(""))
        self._live.stop()
        if self._summary:
            self.console.print(self.stats.line(final=True))

    def add(self, text: str) -> None:
        if not text:
            return
        self._counted()
        # The answer starts: the reasoning before it is done (and collapses).
        self._pending.extend(self.thoughts.end())
        self._parts.append(text)
        self._commit(self._splitter.feed(text))
        self._dirty = True

    def reasoning(self, text: str) -> None:
        """A piece of the model's reasoning (it counts as tokens, like the answer)."""
        if not text:
            return
        self._counted()
        self._pending.extend(self.thoughts.add(text))
        self._dirty = True

    def tool_call(self, frame: dict[str, Any]) -> None:
        """A piece of a tool call (a ``tool_call`` frame); drawn when the answer ends."""
        self._counted()
        self._pending.extend(self.thoughts.end())
        self.tool_calls.add(frame)
        self._dirty = True

    def _counted(self) -> None:
        stats = self.stats
        if stats.first_token is None:
            stats.first_token = time.monotonic()
        stats.chunks += 1

    def usage(self, prompt: int, completion: int, *, estimated: bool = False) -> None:
        self.stats.prompt_tokens, self.stats.completion_tokens = prompt, completion
        self.stats.estimated = estimated
        self._dirty = True

    def text(self) -> str:
        return "".join(self._parts)

    def _commit(self, pieces: Sequence[Piece]) -> None:
        for piece in pieces:
            rendered = self._renderer.render(piece)
            if rendered is not None:
                self._pending.append(rendered)

    def _show(self, region: RenderableType) -> None:
        """One screen update: what finished since the last one is printed above the live
        region, and the region is drawn again below it with ``region``. The console
        buffers it all into one write, so the terminal never shows a half-done frame."""
        self.refreshes += 1
        with self.console:
            if self._pending:
                pending, self._pending = self._pending, []
                self.console.print(Group(*pending))
            self._live.update(region, refresh=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1 / FPS)
            # The spinner turns until the first token (and while hidden reasoning goes
            # on); afterwards only news redraws.
            if self._dirty or self.stats.first_token is None or self._thinking_hidden():
                self._draw()

    def _thinking_hidden(self) -> bool:
        return self.thoughts.active and self.thoughts.mode == "hide"

    def _draw(self) -> None:
        self._dirty = False
        rows = max(3, self.console.height - 4)
        tail = self._renderer.tail(self._splitter, rows)
        status: RenderableType
        if self.stats.first_token is None:
            waited = time.monotonic() - self.stats.started
            status = Spinner(
                "dots",
                Text(
                    t("{model} · waiting {seconds:.1f} s", model=self.stats.model, seconds=waited),
                    style="dim",
                ),
            )
        elif self._thinking_hidden():
            thought = time.monotonic() - (self.thoughts.started or self.stats.started)
            status = Spinner(
                "dots",
                Text(
                    t(
                        "{model} · thinking {seconds:.1f} s",
                        model=self.stats.model,
                        seconds=thought,
                    ),
                    style="dim",
                ),
            )
        else:
            status = self.stats.line(final=False)
        thinking = self.thoughts.live(self.console, min(rows, THINKING_ROWS))
        if thinking is not None:
            tail = thinking if tail is None else Group(thinking, tail)
        self._show(status if tail is None else Group(tail, status))


class RawAnswer:
    """The text as it comes, nothing else (pipes, ``--raw``)."""

    def __init__(self, model: str, out: IO[str] | None = None) -> None:
        self.stats = AnswerStats(model, time.monotonic())
        self._out = out or sys.stdout
        self._terminal = self._out.isatty()
        self._parts: list[str] = []

    async def __aenter__(self) -> RawAnswer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stats.ended = self.stats.ended or time.monotonic()
        if self._parts and not self._parts[-1].endswith("\n"):
            self._out.write("\n")
        self._out.flush()

    def add(self, text: str) -> None:
        if not text:
            return
        if self.stats.first_token is None:
            self.stats.first_token = time.monotonic()
        self.stats.chunks += 1
        self._parts.append(text)
        # On a terminal, an answer must not be able to drive it with escape sequences.
        self._out.write(visible(text) if self._terminal else text)
        self._out.flush()

    def usage(self, prompt: int, completion: int, *, estimated: bool = False) -> None:
        self.stats.prompt_tokens, self.stats.completion_tokens = prompt, completion
        self.stats.estimated = estimated

    def text(self) -> str:
        return "".join(self._parts)
