"""A model's reasoning on the terminal, before its answer.

Reasoning (``reasoning`` frames: ``delta.reasoning_content`` upstream) is drawn dimmed
under a "Thinking…" header, apart from the answer, in one of three ways:

``collapse`` (the default)
    the latest lines stream in the live region while the model thinks; once the answer
    starts they give way to one line, "Thought for 3.1 s, 120 words".
``show``
    printed in full, line by line, and kept above the answer.
``hide``
    not shown: a spinner says the model is thinking.
"""

from __future__ import annotations

import time

from rich.console import Console, Group, RenderableType
from rich.text import Text

from sluice.cli.messages import t
from sluice.cli.render import visible

MODES = ("collapse", "show", "hide")
DEFAULT_MODE = "collapse"
HEADER = "Thinking…"
_SUMMARY = "Thought for {seconds} s, {words} words"
_STYLE = "dim"
_HEADER_STYLE = "dim italic"


class Thoughts:
    """One answer's reasoning: what to print for good, and what the live region shows."""

    def __init__(self, mode: str = DEFAULT_MODE) -> None:
        if mode not in MODES:
            raise ValueError(f"reasoning mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.started: float | None = None
        self.ended: float | None = None
        self._parts: list[str] = []
        #: Show mode: characters of the text already printed (whole lines).
        self._printed = 0

    @property
    def active(self) -> bool:
        """Reasoning has come and the answer has not started yet."""
        return self.started is not None and self.ended is None

    def text(self) -> str:
        return "".join(self._parts)

    def add(self, text: str) -> list[RenderableType]:
        """Take a piece of reasoning; what to print above the live region now."""
        if not text or self.ended is not None:
            return []
        out: list[RenderableType] = []
        if self.started is None:
            self.started = time.monotonic()
            if self.mode == "show":
                out.append(Text(t(HEADER), style=_HEADER_STYLE))
        self._parts.append(text)
        if self.mode == "show" and "\n" in text:
            whole = self.text()
            cut = whole.rfind("\n") + 1
            if cut > self._printed:
                out.append(_dim(whole[self._printed : cut - 1]))
                self._printed = cut
        return out

    def end(self) -> list[RenderableType]:
        """The answer starts (or the turn ends): what to print for good."""
        if not self.active:
            return []
        self.ended = time.monotonic()
        if self.mode == "hide":
            return []
        if self.mode == "show":
            rest = self.text()[self._printed :]
            self._printed = len(self.text())
            return [_dim(rest), Text("")] if rest else [Text("")]
        return [self.summary()]

    def summary(self) -> Text:
        seconds = (self.ended or time.monotonic()) - (self.started or time.monotonic())
        words = len(self.text().split())
        took = f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
        template = "Thought for {seconds} s, 1 word" if words == 1 else _SUMMARY
        return Text(t(template, seconds=took, words=f"{words:,}"), style=_HEADER_STYLE)

    def live(self, console: Console, rows: int) -> RenderableType | None:
        """The live region's view while thinking (None: nothing to show)."""
        if not self.active or self.mode == "hide":
            return None
        # The latest lines only: a long paragraph is printed whole once it ends.
        if self.mode == "show":
            rest = self.text()[self._printed :]
            return _tail(rest, console, rows) if rest else None
        return Group(Text(t(HEADER), style=_HEADER_STYLE), _tail(self.text(), console, rows))


def _tail(text: str, console: Console, rows: int) -> Text:
    width, rows = max(console.width, 20), max(rows, 1)
    # Redrawn up to FPS times a second: wrap only the end, never all of a long text.
    lines = _dim(text[-width * rows * 2 :].strip()).wrap(console, width)
    return Text("\n").join(list(lines)[-rows:])


def _dim(text: str) -> Text:
    return Text(visible(text), style=_STYLE)
