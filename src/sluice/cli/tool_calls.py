"""The tool calls of one answer on the terminal: ``⚙ get_weather({"city": "Tokyo"})``.

``tool_call`` frames carry a call's index, and its id and name in its first piece; the
arguments come as JSON text in pieces. Each call is drawn once its arguments are
complete (the answer has ended): the name, then the arguments dimmed, on one line when
they fit and as indented JSON when they do not. Arguments that are not JSON
(a call cut off at the token limit) are shown as they came.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from sluice.cli.messages import t
from sluice.cli.render import visible

MARK = "⚙ "
#: A call's arguments are text a model wrote: shown up to this many lines.
MAX_LINES = 40
#: Arguments kept per call (a runaway model should not hold the terminal's memory).
MAX_CHARS = 64 * 1024


@dataclass
class _Call:
    name: str = ""
    parts: list[str] = field(default_factory=list)
    size: int = 0

    def arguments(self) -> str:
        return "".join(self.parts)


class ToolCalls:
    def __init__(self) -> None:
        self._calls: dict[int, _Call] = {}

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, frame: dict[str, Any]) -> None:
        index = frame.get("index")
        call = self._calls.setdefault(index if isinstance(index, int) else 0, _Call())
        name = frame.get("name")
        if isinstance(name, str) and name:
            call.name = name
        arguments = frame.get("arguments")
        if isinstance(arguments, str) and arguments and call.size < MAX_CHARS:
            call.parts.append(arguments[: MAX_CHARS - call.size])
            call.size += len(call.parts[-1])

    def names(self) -> list[str]:
        return [call.name for call in self._calls.values()]

    def lines(self, width: int) -> list[Text]:
        """One renderable per call, in call order."""
        return [call_line(c.name, c.arguments(), width) for _, c in sorted(self._calls.items())]


def call_line(name: str, arguments: str, width: int) -> Text:
    def line(shown: str) -> Text:
        # Parts, not Text + Text: a sum takes the first part's style as the whole line's.
        name_part = visible(name) or t("(unnamed)")
        return Text.assemble((MARK, "yellow"), (name_part, "bold"), (visible(shown), "dim"))

    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return line("(" + arguments + ")")
    flat = json.dumps(value, ensure_ascii=False)
    if len(MARK) + len(name) + len(flat) + 2 <= width and "\n" not in flat:
        return line("(" + flat + ")")
    lines = json.dumps(value, ensure_ascii=False, indent=2).splitlines()
    if len(lines) > MAX_LINES:
        kept = lines[: MAX_LINES - 2]
        more = f"  … ({len(lines) - len(kept)} more lines)"
        return line("(" + "\n".join([*kept, more]) + "\n)")
    return line("(" + "\n".join(lines) + ")")
