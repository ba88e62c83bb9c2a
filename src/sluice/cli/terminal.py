"""The terminal commands: ``sluice chat`` and ``sluice ask`` (``sluice history`` is in
``cli/history_commands.py``), and what they share: options, settings, the backend.

Thin, like the rest of ``cli/``: parse flags, load Settings the way ``serve`` does
(``--config``, ``SLUICE_*``), pick a backend (the engine in-process, or a gateway with
``--url``), and hand over. Heavy imports wait until a command runs, so ``--help`` stays
quick. A ``CliError`` becomes one line on stderr and its exit code: 2 for a command used
wrongly, 1 for a failure at run time.
"""

from __future__ import annotations

import asyncio
import enum
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

if TYPE_CHECKING:
    from rich.console import Console

    from sluice.cli.backend import Backend
    from sluice.settings import Settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-C", metavar="FILE", help="TOML config file ([[models]] tables and settings)."
    ),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR", help="Where the SQLite store lives [default: ~/.local/share/sluice]."
    ),
]
UrlOption = Annotated[
    str | None,
    typer.Option(
        metavar="URL",
        envvar="SLUICE_URL",
        help="Use the gateway running at this URL instead of the engine in-process.",
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        metavar="KEY", envvar="SLUICE_KEY", help="API key for --url, sent as a Bearer token."
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", "-m", metavar="NAME", help="Model [default: the configured default]."),
]
SystemOption = Annotated[
    str | None, typer.Option("--system", "-s", metavar="TEXT", help="System prompt.")
]
TemperatureOption = Annotated[
    float | None,
    typer.Option("--temperature", "-t", metavar="T", min=0, max=2, help="Temperature, 0 to 2."),
]
OptionOption = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        "-o",
        metavar="KEY=JSON",
        help="A model option, repeatable: max_tokens=200, seed=7, "
        "sim='{\"tokens_per_second\": 10}'.",
    ),
]


class Reasoning(enum.StrEnum):
    """How ``sluice chat`` draws a model's reasoning (``cli/thinking.py``)."""

    collapse = "collapse"
    show = "show"
    hide = "hide"


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"sluice: error: {message}", err=True)
    return typer.Exit(code)


# typer vendors click privately; its UsageError is the base of the public BadParameter.
_UsageError: type[Exception] = typer.BadParameter.__bases__[0]


def _one_line_usage(ctx: Any, step: Any, args: list[str]) -> Any:
    """Usage errors (an unknown flag, a bad value) as one line, exit code 2."""
    try:
        return step(ctx, args)
    except _UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise
        names, context = [], ctx
        while context.parent is not None:
            names.append(context.info_name)
            context = context.parent
        where = " ".join(["sluice", *reversed(names)])
        message = exc.format_message().rstrip(".")  # type: ignore[attr-defined]
        typer.echo(f"sluice: error: {message}; see `{where} --help`", err=True)
        ctx.exit(2)


class Command(TyperCommand):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        parsed: list[str] = _one_line_usage(ctx, super().parse_args, args)
        return parsed


class Group(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        parsed: list[str] = _one_line_usage(ctx, super().parse_args, args)
        return parsed

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        return _one_line_usage(ctx, super().resolve_command, args)


def _run(work: Coroutine[Any, Any, None]) -> None:
    from sluice.cli.backend import CliError

    try:
        asyncio.run(work)
    except CliError as exc:
        raise fail(exc.message, exc.code) from None


def _settings(config: Path | None, data_dir: Path | None = None) -> Settings:
    from sluice.cli.backend import USAGE, CliError
    from sluice.errors import ConfigError
    from sluice.settings import Settings

    try:
        return Settings.load(config, data_dir=data_dir)
    except ConfigError as exc:
        raise CliError(exc.message, USAGE) from None


def _backend(settings: Settings, url: str | None, key: str | None) -> Backend:
    """In-process unless --url; call with the event loop running."""
    from sluice.cli.backend import USAGE, CliError
    from sluice.errors import ConfigError

    if url:
        from sluice.cli.remote import RemoteBackend

        return RemoteBackend(url, key)
    from sluice.cli.local import LocalBackend

    try:
        return LocalBackend(settings)
    except ConfigError as exc:
        raise CliError(exc.message, USAGE) from None


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, markup=False, emoji=False)


def chat(
    model: ModelOption = None,
    system: SystemOption = None,
    resume: Annotated[
        bool, typer.Option("--continue", "-c", help="Continue the latest conversation.")
    ] = False,
    cid: Annotated[
        str | None,
        typer.Option("--cid", metavar="ID", help="Continue this conversation (an id or prefix)."),
    ] = None,
    temperature: TemperatureOption = None,
    option: OptionOption = None,
    reasoning: Annotated[
        Reasoning,
        typer.Option(
            envvar="SLUICE_REASONING",
            help="A model's reasoning: collapsed to one line once the answer starts, "
            "shown in full, or hidden (/reasoning changes it).",
        ),
    ] = Reasoning.collapse,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Chat in the terminal: answers stream as markdown; /help lists the commands.

    Conversations are stored where the web page's are, so -c continues one started in
    the browser.
    """
    if resume and cid:
        raise fail("give -c (the latest conversation) or --cid ID, not both", 2)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise fail("sluice chat needs a terminal; for pipes and scripts use `sluice ask`", 2)
    from sluice.cli import messages

    # The chat's own words follow the locale (LC_ALL, LC_MESSAGES, LANG): read once, here.
    messages.use(messages.language_from(os.environ))

    async def main() -> None:
        from sluice.cli.options import parse_options
        from sluice.cli.session import ChatSettings, run_chat

        settings = _settings(config, data_dir)
        options = parse_options(option)
        backend = _backend(settings, url, key)
        try:
            await run_chat(
                backend,
                _console(),
                ChatSettings(model, system, temperature, options, resume, cid, reasoning.value),
                settings,
            )
        finally:
            await backend.aclose()

    _run(main())


def ask(
    question: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="QUESTION", help="The question; text piped to stdin goes before it."
        ),
    ] = None,
    model: ModelOption = None,
    system: SystemOption = None,
    temperature: TemperatureOption = None,
    option: OptionOption = None,
    no_stream: Annotated[
        bool, typer.Option("--no-stream", help="Print the answer once it is complete.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final chat.completion object.")
    ] = False,
    raw: Annotated[
        bool,
        typer.Option("--raw", help="Plain text, no markdown rendering (the default when piped)."),
    ] = False,
    chunks: Annotated[
        bool,
        typer.Option("--chunks", help="Print every chunk as it arrives, to debug a stream."),
    ] = False,
    config: ConfigOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Ask one question and stream the answer to stdout (nothing is stored).

    cat notes.md | sluice ask "summarize" reads the piped text as well.
    """
    if sum([as_json, chunks, no_stream]) > 1:
        raise fail("--json, --chunks and --no-stream do not go together; pick one", 2)
    stdin = None if sys.stdin.isatty() else sys.stdin.read()
    from sluice.cli.ask import AskRequest, compose_question

    text = compose_question(question or [], stdin)
    if not text.strip():
        raise fail('no question: give one, as in sluice ask "why is the sky blue?", or pipe it', 2)
    mode = "json" if as_json else "chunks" if chunks else "whole" if no_stream else "stream"

    async def main() -> None:
        from sluice.cli.ask import ask as run_ask
        from sluice.cli.options import parse_options

        settings = _settings(config)
        request = AskRequest(text, model, system, temperature, parse_options(option))
        backend = _backend(settings, url, key)
        try:
            await run_ask(backend, request, mode=mode, raw=raw, console=_console())
        finally:
            await backend.aclose()

    _run(main())


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(chat)
    app.command(cls=Command)(ask)
    from sluice.cli.history_commands import history_app

    app.add_typer(history_app, name="history")
