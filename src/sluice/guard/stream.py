"""Output guardrails on a streaming answer, without buffering it.

Each choice's text passes through a hold-back window (``window`` characters, 64 by
default): what is older than the window is checked and released (in steps of a quarter
window, so a scan is not paid per chunk); the window itself waits for more text, so a
match that spans chunk boundaries is masked before any of it leaves. A match still
touching the end of the text (one more character could extend it) is held whole; a
match longer than the window cannot be guaranteed, which is what the window's size is
for. When the choice finishes, the rest is checked and released.

A block ends the choice at once with ``finish_reason: "content_filter"``: what it held
is dropped, later text of that choice is not passed on, and once every choice is over
the upstream call is closed (no more tokens spent on an answer nobody will see).

::

    upstream batches ──> OutputGuard.feed(batch) ──> batches with released, masked text
                          per choice: held text, released count, blocked?

Tool-call arguments and reasoning text pass unchecked (documented in docs/GUARDRAILS.md);
text keeps its order, and its logprobs are dropped (the held text no longer lines up
with the upstream's tokens).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from sluice.events import Event, Finish, RoleStart, StreamError, TextDelta, Usage
from sluice.guard.rules import Match, Rule, masked, scan
from sluice.tokens import estimate_usage

#: What continues a token-shaped run (a key, an address) at the start of new text.
_RUN = re.compile(r"^[\w.\-+@%:/=~]+")

#: Told of each match that took effect (flags, masks, blocks), once.
Report = Callable[[Match, str], None]


class _Choice:
    __slots__ = ("blocked", "finished", "held", "released", "reported", "swallowing")

    def __init__(self) -> None:
        self.held = ""
        #: Characters of the original text already released (matches' positions are
        #: reported from there, so a rescan never reports one twice).
        self.released = 0
        self.blocked = False
        self.finished = False
        self.reported: set[tuple[str, int]] = set()
        #: Dropping what continues a run masked whole (see OutputGuard._swallow).
        self.swallowing = False


class OutputGuard:
    __slots__ = ("_choices", "_hold", "_report", "_rules", "_step", "_tokens", "_window")

    def __init__(self, rules: list[Rule], window: int, report: Report | None = None) -> None:
        self._rules = rules
        self._window = window
        #: Text is checked and released once this much more than the window is held, not
        #: on every chunk: a scan costs about the same for 4 characters as for 20.
        self._step = max(1, window // 4)
        #: The most text a match still touching the end may hold back: past it, what is
        #: older than the window goes out (masked as far as it matched).
        self._hold = max(4 * window, 256)
        self._report = report
        self._choices: dict[int, _Choice] = {}
        #: Token-bearing events the upstream sent (for an estimate if it is cut off).
        self._tokens = 0

    @property
    def over(self) -> bool:
        """Every choice seen has finished or been blocked, and one was blocked: the
        upstream need not be read further."""
        choices = self._choices.values()
        return any(c.blocked for c in choices) and all(c.blocked or c.finished for c in choices)

    def feed(self, batch: list[Event]) -> list[Event]:
        out: list[Event] = []
        for event in batch:
            kind = type(event)
            if kind is TextDelta:
                assert isinstance(event, TextDelta)
                self._tokens += 1
                choice = self._choice(event.index)
                if not choice.blocked:
                    text = event.text
                    if choice.swallowing:
                        rest = _RUN.sub("", text, count=1)
                        choice.released += len(text) - len(rest)
                        if not rest:
                            continue
                        choice.swallowing = False
                        text = rest
                    choice.held += text
                    if len(choice.held) >= self._window + self._step:
                        self._release(event.index, choice, out, final=False)
            elif kind is Finish:
                assert isinstance(event, Finish)
                choice = self._choice(event.index)
                if not choice.blocked:
                    self._release(event.index, choice, out, final=True)
                    if not choice.blocked:
                        choice.finished = True
                        out.append(event)
            elif kind is RoleStart:
                assert isinstance(event, RoleStart)
                self._choice(event.index)
                out.append(event)
            elif kind is StreamError or kind is Usage:
                out.append(event)
            else:
                self._tokens += 1
                index = getattr(event, "index", 0)
                if not self._choice(index).blocked:
                    out.append(event)
        return out

    def estimate(self, messages: list[dict[str, Any]]) -> Usage:
        """Usage of an answer cut off by a block: what the upstream had sent."""
        usage = estimate_usage(messages, [])
        return Usage(
            usage.prompt_tokens, self._tokens, usage.prompt_tokens + self._tokens, usage.details
        )

    def _choice(self, index: int) -> _Choice:
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = _Choice()
        return choice

    def _release(self, index: int, choice: _Choice, out: list[Event], *, final: bool) -> None:
        text = choice.held
        if not text:
            return
        matches = scan(text, self._rules)
        block = next((m for m in matches if m.action == "block"), None)
        if block is not None:
            self._tell(choice, block)
            choice.blocked = True
            choice.held = ""
            out.append(Finish("content_filter", index))
            return
        cut = len(text) if final else len(text) - self._window
        if not final:
            for match in matches:
                if match.end >= len(text) or match.start < cut < match.end:
                    cut = min(cut, match.start)
            growing = next((m for m in matches if m.end >= len(text)), None)
            if growing is not None and len(text) - growing.start > self._hold:
                # A match that keeps growing (a token-shaped run with no end) is masked
                # whole now, and what continues it is dropped until the run ends:
                # holding it would rescan it on every chunk.
                self._swallow(index, choice, growing, matches, out)
                return
        if cut <= 0:
            return
        for match in matches:
            if match.end <= cut:
                self._tell(choice, match)
        released = masked(text, matches, end=cut)
        choice.held = text[cut:]
        choice.released += cut
        if released:
            out.append(TextDelta(released, index))

    def _swallow(
        self, index: int, choice: _Choice, growing: Match, matches: list[Match], out: list[Event]
    ) -> None:
        text = choice.held
        for match in matches:
            if match.end <= growing.start:
                self._tell(choice, match)
        self._tell(choice, growing)
        released = masked(text, matches, end=growing.start) + growing.label
        choice.held = ""
        choice.released += len(text)
        choice.swallowing = True
        out.append(TextDelta(released, index))

    def _tell(self, choice: _Choice, match: Match) -> None:
        where = (match.rule, choice.released + match.start)
        if self._report is not None and where not in choice.reported:
            choice.reported.add(where)
            self._report(match, "output")


async def guarded(
    stream: AsyncIterator[list[Event]], guard: OutputGuard, messages: list[dict[str, Any]]
) -> AsyncIterator[list[Event]]:
    """``stream`` through ``guard``; closes the upstream once a block ends the answer."""
    try:
        async for batch in stream:
            out = guard.feed(batch)
            if guard.over:
                if not any(type(e) is Usage for e in out):
                    out.append(guard.estimate(messages))
                yield out
                return
            if out:
                yield out
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()
