"""Streamed markdown, split into the pieces that are finished and the tail that is not.

The terminal prints every finished piece once and redraws only the unfinished tail, so a
long answer never repaints what is already on screen. Finished pieces are whole lines,
except tables, which are only known to be tables (and how wide each column is) when
their last row is in. Inside a fenced code block each line is a piece of its own, so
code streams line by line instead of appearing all at once when the fence closes.

Pure: text in, pieces out; no terminal, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# CommonMark fences: three or more backticks or tildes, indented at most three spaces.
# https://spec.commonmark.org/0.31.2/#fenced-code-blocks
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
_TABLE_ROW = re.compile(r"^ {0,3}\|")


@dataclass(frozen=True, slots=True)
class Line:
    """A finished line outside code and tables: paragraph, heading, list item, quote,
    rule or blank."""

    text: str


@dataclass(frozen=True, slots=True)
class FenceOpen:
    lang: str


@dataclass(frozen=True, slots=True)
class CodeLine:
    text: str
    lang: str


@dataclass(frozen=True, slots=True)
class FenceClose:
    lang: str


@dataclass(frozen=True, slots=True)
class TableRows:
    rows: tuple[str, ...]


Piece = Line | FenceOpen | CodeLine | FenceClose | TableRows


@dataclass
class BlockSplitter:
    """``feed`` text as it streams in; get back the pieces it finished."""

    #: The text after the last newline: what is still being written.
    partial: str = ""
    #: The fence that opened the code block we are in (None: not in code).
    fence: str | None = None
    lang: str = ""
    #: Table rows seen so far, held back until the table ends.
    table: list[str] = field(default_factory=list)

    def feed(self, text: str) -> list[Piece]:
        if "\n" not in text:
            self.partial += text
            return []
        *lines, self.partial = (self.partial + text).split("\n")
        out: list[Piece] = []
        for line in lines:
            self._line(line.removesuffix("\r"), out)
        return out

    def close(self) -> list[Piece]:
        """The stream ended: everything left is finished (an unclosed fence is closed)."""
        out: list[Piece] = []
        if self.partial:
            self._line(self.partial, out)
            self.partial = ""
        self._end_table(out)
        if self.fence is not None:
            out.append(FenceClose(self.lang))
            self.fence = None
        return out

    @property
    def in_code(self) -> bool:
        return self.fence is not None

    def _line(self, line: str, out: list[Piece]) -> None:
        if self.fence is not None:
            stripped = line.strip()
            if (
                stripped
                and stripped[0] == self.fence[0]
                and len(stripped) >= len(self.fence)
                and stripped == stripped[0] * len(stripped)
            ):
                out.append(FenceClose(self.lang))
                self.fence = None
            else:
                out.append(CodeLine(line, self.lang))
            return
        if _TABLE_ROW.match(line):
            self.table.append(line)
            return
        self._end_table(out)
        opening = _FENCE.match(line)
        if opening:
            self.fence, self.lang = opening.group(1), opening.group(2)
            out.append(FenceOpen(self.lang))
            return
        out.append(Line(line))

    def _end_table(self, out: list[Piece]) -> None:
        if self.table:
            out.append(TableRows(tuple(self.table)))
            self.table = []


def split_all(text: str) -> list[Piece]:
    """Every piece of a whole text (for answers shown after the fact)."""
    splitter = BlockSplitter()
    return [*splitter.feed(text), *splitter.close()]
