"""Rules that check text where it is: keyword lists, regular expressions, and the PII
detectors. Pure: text in, matches out.

A rule finds matches in folded text (``guard/text.py``) and reports them in the
original's positions, each with what to do about it (``block``, ``mask``, ``flag``), the
category it reports and, for a mask, what replaces it. ``scan`` runs a list of rules
and keeps one match per stretch of text (the earliest, then the longest; a block always
counts); ``masked`` writes the text with every mask applied.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import regex

from sluice.guard.config import GuardrailConfig
from sluice.guard.pii import DETECTORS
from sluice.guard.text import Folded, fold

logger = logging.getLogger("sluice.guard")

#: Longest one configured pattern may scan one text (seconds) before it counts as a
#: match (fail closed).
SCAN_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Match:
    start: int
    end: int
    rule: str
    action: str
    category: str
    #: What replaces the text when the action is ``mask``.
    label: str


class Rule(Protocol):
    name: str
    action: str
    directions: frozenset[str]
    #: The categories its matches report.
    categories: frozenset[str]

    def applies(self, model: str, key: tuple[str, str] | None) -> bool: ...

    def reaches(self, key: tuple[str, str] | None) -> bool: ...

    def find(self, folded: Folded) -> list[Match]: ...


class _Scoped:
    """Where a rule applies: its directions, models and keys."""

    def __init__(self, config: GuardrailConfig) -> None:
        self.name = config.name
        self.action: str = config.action
        self.category = config.category or config.name
        self.directions: frozenset[str] = frozenset(config.applies_to)
        self._models = frozenset(config.models)
        self._keys = frozenset(config.keys)

    def applies(self, model: str, key: tuple[str, str] | None) -> bool:
        """``key``: the caller's key (id, name); None for callers without one."""
        return (not self._models or model in self._models) and self.reaches(key)

    def reaches(self, key: tuple[str, str] | None) -> bool:
        """Whether it applies to this caller (on some model)."""
        return not self._keys or (key is not None and bool(self._keys.intersection(key)))


class PatternRule(_Scoped):
    """A keyword list or regular expressions, matched on folded text."""

    def __init__(self, config: GuardrailConfig) -> None:
        super().__init__(config)
        self._label = config.replacement or f"[{self.category.upper()}]"
        self.categories = frozenset({self.category})
        if config.kind == "keywords":
            sources = [_keyword(word) for word in config.words if word.strip()]
        else:
            sources = [f"(?:{pattern})" for pattern in config.patterns]
        # The `regex` engine, not `re`: configured patterns are not ours, and a pattern
        # that backtracks without end ((a+)+$) must not stall the event loop. It
        # handles the classic cases itself, and a scan still too slow is stopped.
        self._pattern = regex.compile("|".join(sources), regex.IGNORECASE)

    def find(self, folded: Folded) -> list[Match]:
        matches = []
        try:
            for found in self._pattern.finditer(folded.text, timeout=SCAN_SECONDS):
                if found.end() > found.start():
                    start, end = folded.span(found.start(), found.end())
                    matches.append(
                        Match(start, end, self.name, self.action, self.category, self._label)
                    )
        except TimeoutError:
            logger.warning(
                "guardrail %s: a scan took over %s s; treated as a match", self.name, SCAN_SECONDS
            )
            if self.action == "flag":
                return matches
            # Fail closed: what could not be checked is blocked, or masked whole.
            end = folded.span(0, len(folded.text))[1] if folded.text else 0
            return [Match(0, end, self.name, self.action, self.category, self._label)]
        return matches


def _keyword(word: str) -> str:
    """A keyword's pattern: folded like the text; a word of letters and digits matches
    only whole words (``ass`` is not in ``class``), other text anywhere (Japanese has no
    spaces between words)."""
    folded = re.escape(fold(word.strip()).text)
    if word.strip().isascii():
        return rf"(?<![a-z0-9]){folded}(?![a-z0-9])"
    return folded


class PIIRule(_Scoped):
    def __init__(self, config: GuardrailConfig) -> None:
        super().__init__(config)
        wanted = set(config.detectors)
        self._detectors = [d for d in DETECTORS if d.name in wanted]
        self._category = config.category
        self.categories = frozenset(
            {config.category} if config.category else {f"pii/{d.name}" for d in self._detectors}
        )

    def find(self, folded: Folded) -> list[Match]:
        matches = []
        text = folded.text
        gates: dict[Callable[[str], bool], bool] = {}
        for detector in self._detectors:
            gate = detector.gate
            passed = gates.get(gate)
            if passed is None:
                passed = gates[gate] = gate(text)
            if not passed:
                continue
            for first, last in detector.spans(text):
                if detector.valid(text[first:last]):
                    start, end = folded.span(first, last)
                    category = self._category or f"pii/{detector.name}"
                    matches.append(
                        Match(start, end, self.name, self.action, category, detector.label)
                    )
        return matches


def build_rule(config: GuardrailConfig) -> Rule:
    if config.kind == "pii":
        return PIIRule(config)
    return PatternRule(config)


def scan(text: str, rules: list[Rule]) -> list[Match]:
    """Every rule's matches in ``text``, overlaps resolved, in text order."""
    if not rules or not text:
        return []
    folded = fold(text)
    found = [match for rule in rules for match in rule.find(folded)]
    if len(found) < 2:
        return found
    found.sort(key=lambda m: (m.start, -(m.end - m.start)))
    kept: list[Match] = []
    for match in found:
        if kept and match.start < kept[-1].end:
            last = kept[-1]
            if match.action == "block" and last.action != "block":
                kept[-1] = match  # a block is never hidden by a mask over the same text
            elif last.action != "block" and "mask" in (match.action, last.action):
                # Overlapping masks (a phone running into an e-mail address) become one
                # span, so no part of either is left out; a flag never hides a mask.
                wider = last if last.action == "mask" else match
                kept[-1] = replace(wider, start=last.start, end=max(last.end, match.end))
            continue
        kept.append(match)
    return kept


def masked(text: str, matches: list[Match], *, end: int | None = None) -> str:
    """``text[:end]`` with every mask applied (matches in text order, within ``end``)."""
    stop = len(text) if end is None else end
    out: list[str] = []
    at = 0
    for match in matches:
        if match.action != "mask" or match.end > stop:
            continue
        out.append(text[at : match.start])
        out.append(match.label)
        at = match.end
    out.append(text[at:stop])
    return "".join(out)
