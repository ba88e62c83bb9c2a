"""``sluice history``: the stored conversations (the web page's too) — list, search,
show, export. The options, settings and backend are ``cli/terminal.py``'s."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sluice.cli.terminal import (
    Command,
    ConfigOption,
    DataDirOption,
    Group,
    KeyOption,
    UrlOption,
    _backend,
    _console,
    _run,
    _settings,
)

if TYPE_CHECKING:
    from rich.console import Console

    from sluice.cli.backend import Backend


class Format(enum.StrEnum):
    md = "md"
    json = "json"


history_app = typer.Typer(
    cls=Group,
    help="The stored conversations (the web page's too): list, show, search, export.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _history(
    config: Path | None,
    data_dir: Path | None,
    url: str | None,
    key: str | None,
    work: Any,
) -> None:
    async def main() -> None:
        backend = _backend(_settings(config, data_dir), url, key)
        try:
            await work(backend, _console())
        finally:
            await backend.aclose()

    _run(main())


@history_app.command("list", cls=Command)
def history_list(
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, max=200, help="How many.")
    ] = 20,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """The latest conversations, newest first (tab-separated when piped)."""
    from sluice.cli.history import list_conversations

    async def work(backend: Backend, console: Console) -> None:
        await list_conversations(backend, console, query=None, limit=limit)

    _history(config, data_dir, url, key, work)


@history_app.command("search", cls=Command)
def history_search(
    text: Annotated[
        str, typer.Argument(metavar="TEXT", help="Text to find in titles and messages.")
    ],
    limit: Annotated[
        int, typer.Option("--limit", "-n", metavar="N", min=1, max=200, help="How many.")
    ] = 20,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Conversations whose title or messages contain TEXT (any case, any language)."""
    from sluice.cli.history import list_conversations

    async def work(backend: Backend, console: Console) -> None:
        await list_conversations(backend, console, query=text, limit=limit)

    _history(config, data_dir, url, key, work)


@history_app.command("show", cls=Command)
def history_show(
    conversation: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="An id or prefix [default: the latest].")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """One conversation, rendered (markdown when piped)."""
    from sluice.cli.history import show

    async def work(backend: Backend, console: Console) -> None:
        await show(backend, console, conversation)

    _history(config, data_dir, url, key, work)


@history_app.command("export", cls=Command)
def history_export(
    conversation: Annotated[
        str | None, typer.Argument(metavar="[ID]", help="An id or prefix [default: the latest].")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="md or json.")] = Format.md,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-O", metavar="FILE", help="Write to this file, not stdout."),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """One conversation as markdown or JSON (the shape of GET /v1/conversations/ID)."""
    from sluice.cli.backend import CliError
    from sluice.cli.history import export_text, latest_or

    async def work(backend: Backend, console: Console) -> None:
        conversation_id = await latest_or(backend, conversation)
        text = export_text(*await backend.conversation(conversation_id), fmt.value) + "\n"
        if output is None:
            sys.stdout.write(text)
            return
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None

    _history(config, data_dir, url, key, work)
