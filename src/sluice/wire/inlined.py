"""Text files inlined into a question: how an attached file is written into the message
text the model reads, and how that text is read back (the simulated model says what it
received).

A file is its name on a line, then its text in a fenced block (CommonMark 4.5) whose fence
is longer than any run of backticks inside, so no file can close the block early and
pass its own text off as the user's::

    File: notes.md
    ```md
    …
    ```
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

_HEADER = "File: "
_BACKTICKS = re.compile(r"`+")
#: An info string is the extension when it is a plain word (``py``, ``md``), else none.
_EXTENSION = re.compile(r"\.([A-Za-z0-9+-]{1,12})$")
_FENCE = re.compile(r"`{3,}")


@dataclass(frozen=True, slots=True)
class InlinedFile:
    name: str
    text: str

    @property
    def lines(self) -> int:
        return len(self.text.splitlines())


def inline(name: str, text: str) -> str:
    """``text`` as a fenced block headed by ``name`` (which must hold no line break)."""
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    found = _EXTENSION.search(name)
    info = found.group(1).lower() if found else ""
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{_HEADER}{name}\n{fence}{info}\n{body}{fence}"


def inlined_files(text: str) -> list[InlinedFile]:
    """The files inlined into ``text``, in order."""
    return [file for file, _, _ in _blocks(text)]


def without_files(text: str) -> str:
    """``text`` with its inlined files taken out (what the user typed)."""
    blocks = _blocks(text)
    if not blocks:
        return text
    lines = text.split("\n")
    kept: list[str] = []
    at = 0
    for _, first, last in blocks:
        kept += lines[at:first]
        at = last + 1
    kept += lines[at:]
    return "\n".join(kept).strip()


def _blocks(text: str) -> list[tuple[InlinedFile, int, int]]:
    """Each inlined file with its first and last line numbers. Linear in the text (each
    fence's closing line is looked up, not searched for), so a question made of a
    hundred thousand unclosed headers costs no more than reading it."""
    if _HEADER not in text:
        return []
    lines = text.split("\n")
    closing: dict[str, list[int]] = {}
    for number, line in enumerate(lines):
        if line.startswith("```") and _FENCE.fullmatch(line):
            closing.setdefault(line, []).append(number)
    found: list[tuple[InlinedFile, int, int]] = []
    number = 0
    while number < len(lines) - 1:
        line = lines[number]
        opening = _FENCE.match(lines[number + 1]) if line.startswith(_HEADER) else None
        if opening is None or "`" in lines[number + 1][opening.end() :]:
            number += 1
            continue
        fence = opening.group()
        ends = closing.get(fence, [])
        end = bisect.bisect_right(ends, number + 1)
        if end == len(ends):
            number += 1
            continue
        last = ends[end]
        inside = lines[number + 2 : last]
        body = "\n".join(inside) + "\n" if inside else ""
        found.append((InlinedFile(line[len(_HEADER) :], body), number, last))
        number = last + 1
    return found
