"""One answer on the terminal as it streams.

``LiveAnswer`` prints every finished markdown piece once (``blocks.py`` decides what is
finished, ``render.py`` draws it) and keeps only the unfinished tail and a status line
in a small transient ``rich.live`` region. The screen is updated by one ticker at most
``FPS`` times a second however fast tokens arrive, so a fast model costs no more
terminal writes than a slow one, and nothing already printed is ever drawn again.

``RawAnswer`` is the same interface writing the text as it comes, with no markup and no
escape sequences: for pipes and ``--raw``.

The status line shows a spinner until the first token, then time to first token,
tokens per second and tokens (N/A while unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from sluice.cli.blocks import BlockSplitter, Piece
from sluice.cli.render import PieceRenderer, visible

FPS = 12


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
    ) -> None:
        self.console = console
        #: ``started``: when the request went out (time.monotonic), for the TTFT.
        self.stats = AnswerStats(model, started or time.monotonic())
        self._summary = summary
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
        self._commit(self._splitter.close())
        self._show(Text(""))
        self._live.stop()
        if self._summary:
            self.console.print(self.stats.line(final=True))

    def add(self, text: str) -> None:
        if not text:
            return
        stats = self.stats
        if stats.first_token is None:
            stats.first_token = time.monotonic()
        stats.chunks += 1
        self._parts.append(text)
        self._commit(self._splitter.feed(text))
        self._dirty = True

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
            # The spinner turns until the first token; afterwards only news redraws.
            if self._dirty or self.stats.first_token is None:
                self._draw()

    def _draw(self) -> None:
        self._dirty = False
        rows = max(3, self.console.height - 4)
        tail = self._renderer.tail(self._splitter, rows)
        if self.stats.first_token is None:
            waited = time.monotonic() - self.stats.started
            status: RenderableType = Spinner(
                "dots", Text(f"{self.stats.model} · waiting {waited:.1f} s", style="dim")
            )
        else:
            status = self.stats.line(final=False)
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
