"""Folding text for matching, with the way back to the original's positions.

Rules match on folded text — NFKC (full-width and half-width forms, compatibility
characters), case-folded, katakana as hiragana — so ``ＥＸＡＭＰＬＥ``, ``example`` and
``Example`` are one word, and ``ｶﾀｶﾅ``, ``カタカナ`` and ``かたかな`` too. What is used to
slip past a rule is folded away as well: invisible characters (zero-width spaces and
joiners, soft hyphens, BOMs: Unicode's format characters) are dropped, accents on Latin
letters are dropped, any run of white space is one space, and every dash (``ー − — –``)
is ``-``. A match is found in the folded text and masked in the original:
``Folded.span`` maps it back.
"""

from __future__ import annotations

import re
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


#: Dashes (and the katakana long-vowel mark, which stands in for one in phone numbers).
_DASHES = {ord(c): "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc\uff70"}
#: ASCII text the fast path cannot fold: runs of white space, or white space other than
#: a plain space.
_SPACING = re.compile(r"\s\s|[\t\n\r\f\v]")


@lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    if unicodedata.category(char) == "Cf":
        return ""  # invisible: zero-width space, joiner, soft hyphen, BOM …
    if char.isspace():
        return " "
    folded = unicodedata.normalize("NFKC", char.translate(_DASHES)).casefold()
    if not folded.isascii() and all(ord(c) < 0x250 for c in folded):
        # A Latin letter with an accent: é is e (decomposed, the marks dropped).
        bare = "".join(
            c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
        )
        folded = bare or folded
    return folded.translate(_KATAKANA)


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
    if text.isascii() and _SPACING.search(text) is None:
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
        if not folded:
            continue
        if folded == " " and out and out[-1] == " ":
            ends[-1] = position + 1  # one space for a run of them
            continue
        if unicodedata.combining(folded[0]) and out and out[-1].isascii():
            ends[-1] = position + 1  # an accent on a Latin letter: é is e
            continue
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
