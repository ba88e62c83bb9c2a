"""Markdown pieces (``blocks.py``) -> rich renderables for the terminal.

Each finished line is rendered on its own: headings, list items (with a hanging indent),
quotes, rules, paragraphs with inline emphasis, code spans and links. Code is
highlighted line by line, each line lexed together with the lines before it so that a
multi-line string or comment keeps its colour; tables are drawn when their last row is
in. Model output is text, never markup: rich markup and terminal control characters in
it are shown, not obeyed.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.style import Style
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from sluice.cli.blocks import (
    BlockSplitter,
    CodeLine,
    FenceClose,
    FenceOpen,
    Line,
    Piece,
    TableRows,
)

CODE_THEME = "monokai"

_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:\s*\1){2,}\s*$")
_BULLET = re.compile(r"^(\s*)([-*+])\s+(.*)$")
_ORDERED = re.compile(r"^(\s*)(\d{1,9})([.)])\s+(.*)$")
_QUOTE = re.compile(r"^ {0,3}>\s?(.*)$")
_DELIMITER = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# C0 controls (but tab and newline), DEL and C1 controls: an answer must not be able to
# move the cursor, clear the screen or retitle the window.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

_HEADING_STYLES = {
    1: Style(bold=True, underline=True, color="magenta"),
    2: Style(bold=True, color="magenta"),
    3: Style(bold=True),
}
_BULLETS = ("•", "◦", "▪")

_md = MarkdownIt("commonmark").enable("strikethrough")


def visible(text: str) -> str:
    """``text`` with control characters shown as ``^X`` instead of sent to the terminal."""
    if not _CONTROL.search(text):
        return text
    text = text.replace("\r\n", "\n")
    return _CONTROL.sub(lambda m: "^" + chr((ord(m.group()) + 64) % 128), text)


def inline(text: str, style: Style | str = "") -> Text:
    """Inline markdown (emphasis, code spans, links, strikethrough) as styled text."""
    text = visible(text)
    out = Text(style=style)
    tokens = _md.parseInline(text, {})
    children: list[Token] = (tokens[0].children or []) if tokens else []
    stack: list[Style] = []

    def current() -> Style:
        return Style.chain(*stack) if stack else Style()

    for token in children:
        kind = token.type
        if kind in ("text", "html_inline"):
            out.append(token.content, current())
        elif kind == "code_inline":
            out.append(token.content, current() + Style(color="cyan", bgcolor="grey19"))
        elif kind in ("softbreak", "hardbreak"):
            out.append("\n")
        elif kind == "strong_open":
            stack.append(Style(bold=True))
        elif kind == "em_open":
            stack.append(Style(italic=True))
        elif kind == "s_open":
            stack.append(Style(strike=True))
        elif kind == "link_open":
            href = str(token.attrs.get("href", ""))
            stack.append(Style(color="blue", underline=True, link=href or None))
        elif kind in ("strong_close", "em_close", "s_close", "link_close"):
            if stack:
                stack.pop()
        elif kind == "image":
            out.append(f"[image: {token.content or token.attrs.get('src', '')}]", current())
        else:
            out.append(token.content, current())
    return out


def _hanging(prefix: Text, body: Text, indent: int) -> RenderableType:
    # A grid wraps the body under itself, not under the bullet.
    grid = Table.grid(padding=0)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row(prefix, body)
    return Padding(grid, (0, 0, 0, indent)) if indent else grid


def line(text: str) -> RenderableType:
    """One finished line of markdown outside code and tables."""
    if not text.strip():
        return Text("")
    heading = _HEADING.match(text)
    if heading:
        level = len(heading.group(1))
        return inline(heading.group(2), _HEADING_STYLES.get(level, Style(bold=True)))
    if _RULE.match(text):
        return Rule(style="dim")
    bullet = _BULLET.match(text)
    if bullet:
        depth = len(bullet.group(1).expandtabs(4)) // 2
        mark = _BULLETS[min(depth, len(_BULLETS) - 1)]
        return _hanging(Text(f" {mark} ", style="bold"), inline(bullet.group(3)), depth * 2)
    ordered = _ORDERED.match(text)
    if ordered:
        depth = len(ordered.group(1).expandtabs(4)) // 3
        number = Text(f" {ordered.group(2)}{ordered.group(3)} ", style="bold cyan")
        return _hanging(number, inline(ordered.group(4)), depth * 3)
    quote = _QUOTE.match(text)
    if quote:
        return _hanging(Text("▌ ", style="magenta"), inline(quote.group(1), "italic"), 0)
    return inline(text.strip())


def table(rows: tuple[str, ...]) -> RenderableType:
    if len(rows) < 2 or not _DELIMITER.match(rows[1]):
        return Group(*(line(row) for row in rows))
    header = _cells(rows[0])
    aligns = [_align(cell) for cell in _cells(rows[1])]
    grid = Table(box=box.ROUNDED, header_style="bold", border_style="dim")
    for position, cell in enumerate(header):
        justify = aligns[position] if position < len(aligns) else "left"
        grid.add_column(inline(cell), justify=justify)  # type: ignore[arg-type]
    for row in rows[2:]:
        cells = _cells(row)
        cells += [""] * (len(header) - len(cells))
        grid.add_row(*(inline(cell) for cell in cells[: len(header)]))
    return grid


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row)]


def _align(cell: str) -> str:
    cell = cell.strip()
    if cell.startswith(":") and cell.endswith(":"):
        return "center"
    return "right" if cell.endswith(":") else "left"


class PieceRenderer:
    """Renders the pieces of one answer in order (it remembers the open code block)."""

    def __init__(self) -> None:
        self._code: list[str] = []
        self._lexer = "text"

    def render(self, piece: Piece) -> RenderableType | None:
        if isinstance(piece, Line):
            return line(piece.text)
        if isinstance(piece, CodeLine):
            self._code.append(piece.text)
            return self._code_line(self._code)
        if isinstance(piece, FenceOpen):
            self._code = []
            # An unknown language is shown as plain text (rich falls back).
            self._lexer = piece.lang or "text"
            return _band(piece.lang or "code", "text")
        if isinstance(piece, FenceClose):
            self._code = []
            return _band("", "text")
        if isinstance(piece, TableRows):
            return table(piece.rows)
        return None

    def tail(self, splitter: BlockSplitter, max_rows: int) -> RenderableType | None:
        """The unfinished part: table rows held back and the line being written."""
        parts: list[RenderableType] = []
        if splitter.table:
            rows = splitter.table[-max(1, max_rows - 2) :]
            parts.extend(Text(visible(row), style="dim") for row in rows)
        if splitter.partial:
            if splitter.in_code:
                parts.append(self._code_line([*self._code, splitter.partial]))
            else:
                parts.append(line(splitter.partial))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else Group(*parts)

    def _code_line(self, lines: list[str]) -> RenderableType:
        # Lexed with every line before it, so strings and comments spanning lines keep
        # their colours; only the last line is drawn.
        return _band("\n".join(lines), self._lexer, len(lines))


def _band(code: str, lexer: str, number: int = 1) -> Syntax:
    return Syntax(
        visible(code),
        lexer,
        theme=CODE_THEME,
        line_range=(number, number),
        padding=(0, 1),
        word_wrap=True,
    )


def render_all(text: str) -> list[RenderableType]:
    """A whole answer, rendered (for answers shown after the fact)."""
    splitter = BlockSplitter()
    renderer = PieceRenderer()
    pieces = [*splitter.feed(text), *splitter.close()]
    return [r for r in (renderer.render(p) for p in pieces) if r is not None]
