"""Folding text for matching, with the way back to the original's positions.

Rules match on folded text — NFKC (full-width and half-width forms, compatibility
characters), case-folded, katakana as hiragana — so ``ＥＸＡＭＰＬＥ``, ``example`` and
``Example`` are one word, and ``ｶﾀｶﾅ``, ``カタカナ`` and ``かたかな`` too. A match is found
in the folded text and masked in the original: ``Folded.span`` maps it back.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

#: Katakana (ァ..ヶ) -> hiragana (ぁ..ゖ): the same syllables, one code point apart.
_KATAKANA = {code: code - 0x60 for code in range(0x30A1, 0x30F7)}
#: The combining voiced / semi-voiced marks NFKC makes of half-width ﾞ and ﾟ.
_MARKS = ("\u3099", "\u309a")
#: Position maps of ASCII text up to this long, shared (the held window is short).
_CACHED = 1024
_RANGE = tuple(range(_CACHED))
_ENDS = tuple(range(1, _CACHED + 1))


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    return unicodedata.normalize("NFKC", char).casefold().translate(_KATAKANA)


@dataclass(frozen=True, slots=True)
class Folded:
    text: str
    #: For each folded character, where the original characters it came from start…
    origin: tuple[int, ...]
    #: … and end (ｶﾞ, two characters, folds to one).
    ends: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the folded span ``[start, end)``."""
        first = self.origin[start]
        return first, (self.ends[end - 1] if end > start else first)


def fold(text: str) -> Folded:
    if text.isascii():
        # The common case: ASCII folds to its lower case, one character for one.
        size = len(text)
        if size <= _CACHED:
            return Folded(text.lower(), _RANGE[:size], _ENDS[:size])
        return Folded(text.lower(), tuple(range(size)), tuple(range(1, size + 1)))
    out: list[str] = []
    origin: list[int] = []
    ends: list[int] = []
    for position, char in enumerate(text):
        folded = _fold_char(char)
        if folded in _MARKS and out:
            # ｶﾞ -> カ + a combining mark: compose with the character before it (ガ -> が).
            composed = unicodedata.normalize("NFC", out[-1] + folded)
            if len(composed) == 1:
                out[-1] = composed.translate(_KATAKANA)
                ends[-1] = position + 1
                continue
        for piece in folded:
            out.append(piece)
            origin.append(position)
            ends.append(position + 1)
    return Folded("".join(out), tuple(origin), tuple(ends))
