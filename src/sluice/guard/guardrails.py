"""The configured guardrails, applied where a request comes in and an answer goes out.

::

    Guardrails(configs, window, http)
      ├─ select(model, key)            the rules for this model and caller
      ├─ check_input(request, rules)   the request with masks applied, or ContentFiltered
      │                                (400, nothing sent upstream); flags reported
      ├─ guard(stream, rules, msgs)    the answer's batches through an OutputGuard
      └─ moderate(texts, key)          /v1/moderations: every input rule, as verdicts

``on_match`` (set by the composition root) hears of every match that took effect:
metrics and the request log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from sluice.errors import ContentFiltered
from sluice.events import Event
from sluice.guard.config import GuardrailConfig
from sluice.guard.moderation_api import ModerationAPIRule
from sluice.guard.rules import Match, Rule, build_rule, masked, scan
from sluice.guard.stream import OutputGuard, guarded
from sluice.providers.http_client import HttpClient
from sluice.wire.openai_request import ChatRequest

#: The hold-back window when the settings name none (characters).
DEFAULT_WINDOW = 64
#: Input text past this many characters is scanned in a worker thread.
THREAD_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class Selected:
    """The rules for one request."""

    input: list[Rule]
    output: list[Rule]
    remote: list[ModerationAPIRule]

    def __bool__(self) -> bool:
        return bool(self.input or self.output or self.remote)


NONE = Selected([], [], [])


class Guardrails:
    def __init__(
        self,
        configs: list[GuardrailConfig],
        *,
        window: int = DEFAULT_WINDOW,
        http: HttpClient | None = None,
    ) -> None:
        self.window = window
        self._local: list[Rule] = [build_rule(c) for c in configs if c.kind != "moderation_api"]
        remote = [c for c in configs if c.kind == "moderation_api"]
        self._http = http or HttpClient()
        self._remote = [ModerationAPIRule(c, self._http) for c in remote]
        self._owns_http = http is None
        #: Hears of every match that took effect, with its direction.
        self.on_match: Callable[[Match, str], None] | None = None

    def __bool__(self) -> bool:
        return bool(self._local or self._remote)

    def select(self, model: str, key: tuple[str, str] | None) -> Selected:
        """``key``: the caller's API key (id, name), None without one."""
        if not self:
            return NONE
        local = [rule for rule in self._local if rule.applies(model, key)]
        return Selected(
            [r for r in local if "input" in r.directions],
            [r for r in local if "output" in r.directions],
            [r for r in self._remote if r.applies(model, key)],
        )

    # -- input ----------------------------------------------------------------

    async def check_input(self, request: ChatRequest, rules: Selected) -> ChatRequest:
        """``request`` with every input mask applied; raises ContentFiltered (400) on a
        block, before anything is sent upstream."""
        if not rules.input and not rules.remote:
            return request
        messages = request.messages
        found: list[Match] = []
        try:
            if _size(messages) > THREAD_CHARS:
                # A big body is scanned off the event loop (other requests go on).
                changed, texts = await asyncio.to_thread(
                    self._local_input, messages, rules.input, found
                )
            else:
                changed, texts = self._local_input(messages, rules.input, found)
        finally:
            # Each rule and action once per request, however many matches.
            for match in {(m.rule, m.action): m for m in found}.values():
                self._took_effect(match, "input")
        for rule in rules.remote:
            verdicts = await rule.check([text for _, text in texts])
            for (position, _), verdict in zip(texts, verdicts, strict=True):
                if verdict is not None:
                    self._took_effect(verdict, "input")
                    if verdict.action == "block":
                        raise _blocked(verdict, position)
        if all(a is b for a, b in zip(changed, messages, strict=True)):
            return request
        return replace(request, body={**request.body, "messages": changed})

    def _local_input(
        self, messages: list[dict[str, Any]], rules: list[Rule], found: list[Match]
    ) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
        changed: list[dict[str, Any]] = []
        texts: list[tuple[int, str]] = []
        for position, message in enumerate(messages):
            updated, text = self._message(position, message, rules, found)
            changed.append(updated)
            if text:
                texts.append((position, text))
        return changed, texts

    def _message(
        self, position: int, message: dict[str, Any], rules: list[Rule], found: list[Match]
    ) -> tuple[dict[str, Any], str]:
        """The message with masks applied (itself if none), and its text; what matched
        is added to ``found``."""
        content = message.get("content")
        if isinstance(content, str):
            text = self._checked(content, rules, position, found)
            return (message if text == content else {**message, "content": text}), text
        if not isinstance(content, list):
            return message, ""
        spots = [
            (position_, part["text"])
            for position_, part in enumerate(content)
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        # The model reads the parts as one text: they are checked as one, so a word
        # split over two parts is still the word.
        joined = "".join(text for _, text in spots)
        matches = scan(joined, rules)
        found += matches
        for match in matches:
            if match.action == "block":
                raise _blocked(match, position)
        if not any(m.action == "mask" for m in matches):
            return message, joined
        parts = list(content)
        for (at, text), rewritten in zip(spots, _split_masked(joined, spots, matches), strict=True):
            if rewritten != text:
                parts[at] = {**content[at], "text": rewritten}
        return {**message, "content": parts}, joined

    def _checked(self, text: str, rules: list[Rule], position: int, found: list[Match]) -> str:
        matches = scan(text, rules)
        found += matches
        for match in matches:
            if match.action == "block":
                raise _blocked(match, position)
        return masked(text, matches) if matches else text

    # -- output ---------------------------------------------------------------

    def guard(
        self,
        stream: AsyncIterator[list[Event]],
        rules: list[Rule],
        messages: list[dict[str, Any]],
    ) -> AsyncIterator[list[Event]]:
        if not rules:
            return stream
        report = self._took_effect if self.on_match is not None else None
        return guarded(stream, OutputGuard(rules, self.window, report), messages)

    # -- the moderation endpoint ------------------------------------------------

    async def moderate(self, texts: list[str], key: tuple[str, str] | None) -> list[list[Match]]:
        """For each text, the matches of every input rule that applies to this caller
        (any model)."""
        local = [r for r in self._local if "input" in r.directions and r.reaches(key)]
        results = [scan(text, local) for text in texts]
        for rule in self._remote:
            if rule.reaches(key):
                for found, verdict in zip(results, await rule.check(texts), strict=True):
                    if verdict is not None:
                        found.append(verdict)
        return results

    def categories(self, key: tuple[str, str] | None) -> set[str]:
        """Every category the input rules reaching this caller can report."""
        found: set[str] = set()
        rules: list[Rule | ModerationAPIRule] = [*self._local, *self._remote]
        for rule in rules:
            if "input" in rule.directions and rule.reaches(key):
                found.update(rule.categories)
        return found

    def _took_effect(self, match: Match, direction: str) -> None:
        if self.on_match is not None:
            self.on_match(match, direction)

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


def _size(messages: list[dict[str, Any]]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content)
        elif isinstance(content, list):
            total += sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    return total


def _split_masked(joined: str, spots: list[tuple[int, str]], matches: list[Match]) -> list[str]:
    """Each part's text with the masks of the joined text applied: a mask's label goes
    where the match starts, and what it covers is removed from every part it spans."""
    masks = [m for m in matches if m.action == "mask"]
    out: list[str] = []
    begin = 0
    for _, text in spots:
        end = begin + len(text)
        pieces: list[str] = []
        at = begin
        for match in masks:
            if match.end <= begin or match.start >= end:
                continue
            if match.start >= begin:
                pieces.append(joined[at : match.start])
                pieces.append(match.label)
            at = max(at, min(match.end, end))
        pieces.append(joined[at:end])
        out.append("".join(pieces))
        begin = end
    return out


def _blocked(match: Match, position: int) -> ContentFiltered:
    return ContentFiltered(
        f"The request was blocked by the content filter (category: {match.category}).",
        category=match.category,
        param=f"messages[{position}].content",
    )
