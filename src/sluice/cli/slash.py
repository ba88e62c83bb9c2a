"""The ``/`` commands of ``sluice chat``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from rich.table import Table
from rich.text import Text

from sluice.cli import clipboard
from sluice.cli.backend import CliError
from sluice.cli.history import export_text
from sluice.cli.messages import t
from sluice.cli.options import parse_option
from sluice.cli.thinking import MODES

if TYPE_CHECKING:
    from sluice.cli.repl import ChatRepl

Handler = Callable[["ChatRepl", str], Awaitable[None]]


@runtime_checkable
class SavesSettings(Protocol):
    """A backend that can write a conversation's settings (both built-in ones can; a
    stand-in without it only changes the session)."""

    async def save_settings(
        self, conversation_id: str, changes: dict[str, Any], options: dict[str, Any]
    ) -> None:
        """Set the conversation's fields in ``changes`` and, in its options, each key
        of ``options`` (None removes it)."""


#: name -> (arguments, what it does: English, translated by ``t`` when shown); the order
#: of /help.
COMMANDS: dict[str, tuple[str, str]] = {
    "/model": ("[NAME]", "list the models, or switch to NAME (kept with the conversation)"),
    "/system": ("[TEXT | off]", "show, set or clear the system prompt (kept, too)"),
    "/temperature": ("[T | default]", "show or set the temperature, 0 to 2 (kept, too)"),
    "/option": ("[KEY=JSON | KEY=]", "show, set or remove a model option (max_tokens, seed…)"),
    "/reasoning": ("[collapse | show | hide]", "how the model's reasoning is drawn"),
    "/retry": ("", "answer the last question again (kept as a new version)"),
    "/continue": ("", "carry on the last answer, stopped or cut off (the same answer grows)"),
    "/new": ("", "start a new conversation"),
    "/history": ("", "show this conversation so far"),
    "/copy": ("", "copy the last answer to the clipboard"),
    "/save": ("FILE", "save this conversation as markdown (or JSON: FILE.json)"),
    "/multi": ("", "multi-line mode: Enter adds a line, Esc-Enter sends"),
    "/help": ("", "this list"),
    "/exit": ("", "quit (also /quit and Ctrl-D)"),
}

KEYS = (
    ("Ctrl-C", "stop the answer being written; clear the line; twice on an empty line: quit"),
    ("Ctrl-D", "quit"),
    ("Esc-Enter", "a new line (sends, in multi-line mode)"),
    ("Up / Ctrl-R", "earlier questions, also from earlier sessions"),
    ("Ctrl-X Ctrl-E", "edit the question in $EDITOR"),
    ("//text", "send a message that starts with /"),
)


async def run_command(repl: ChatRepl, line: str) -> None:
    name, *rest = line.split(None, 1)
    name = name.lower()
    argument = rest[0] if rest else ""
    handler = _HANDLERS.get(name)
    if handler is None:
        close = [c for c in COMMANDS if c.startswith(name)]
        hint = t("did you mean {names}? ", names=t(" or ").join(close)) if close else ""
        raise CliError(t("unknown command {name}; {hint}/help lists them", name=name, hint=hint))
    await handler(repl, argument.strip())


async def _help(repl: ChatRepl, _: str) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column()
    for name, (arguments, what) in COMMANDS.items():
        table.add_row(f"{name} {arguments}".strip(), t(what))
    table.add_row("", "")
    for key, what in KEYS:
        table.add_row(key, t(what))
    repl.console.print(table)


async def _exit(repl: ChatRepl, _: str) -> None:
    repl.quit = True


async def _model(repl: ChatRepl, argument: str) -> None:
    models = await repl.backend.models()
    if not argument:
        for name in models:
            mark = "●" if name == repl.state.model else " "
            repl.console.print(Text(f"{mark} {name}", style="bold" if mark == "●" else ""))
        return
    if argument not in models:
        raise CliError(
            t("no model {name!r}; pick one of: {models}", name=argument, models=", ".join(models))
        )
    repl.state.model = argument
    repl.note(t("model: {name}", name=argument))
    await _keep(repl, {"model": argument})


async def _keep(
    repl: ChatRepl, changes: dict[str, Any], options: dict[str, Any] | None = None
) -> None:
    """Keep a setting with the conversation, so that ``chat -c`` (or the web page)
    continues with it; a conversation not started yet gets it with its first turn."""
    conversation_id = repl.state.conversation_id
    backend = repl.backend
    if conversation_id is None or not isinstance(backend, SavesSettings):
        return
    try:
        await backend.save_settings(conversation_id, changes, options or {})
    except CliError as exc:
        repl.note(t("not saved to the conversation: {error}", error=exc.message))


async def _system(repl: ChatRepl, argument: str) -> None:
    state = repl.state
    if not argument:
        shown = state.system or t("(none set here; the conversation's own, if any)")
        repl.note(t("system prompt: {prompt}", prompt=shown))
        return
    state.system = "" if argument.lower() in ("off", "none", "clear") else argument
    repl.note(t("system prompt cleared" if not state.system else "system prompt set"))
    await _keep(repl, {"system_prompt": state.system or None})


async def _temperature(repl: ChatRepl, argument: str) -> None:
    state = repl.state
    if not argument:
        shown = t("the model's default") if state.temperature is None else str(state.temperature)
        repl.note(t("temperature: {value}", value=shown))
        return
    if argument.lower() in ("default", "off", "none"):
        state.temperature = None
        repl.note(t("temperature: {value}", value=t("the model's default")))
        await _keep(repl, {}, {"temperature": None})
        return
    try:
        value = float(argument)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 2:
        raise CliError(t("temperature {value!r} is not a number from 0 to 2", value=argument))
    state.temperature = value
    repl.note(t("temperature: {value}", value=value))
    await _keep(repl, {}, {"temperature": value})


async def _option(repl: ChatRepl, argument: str) -> None:
    options = repl.state.options
    if not argument:
        if not options:
            repl.note(t("no options set; /option KEY=JSON sets one (max_tokens=200, seed=1…)"))
        for key, value in options.items():
            repl.note(f"{key} = {orjson.dumps(value).decode()}")
        return
    key, value = parse_option(argument)
    if value is None:
        options.pop(key, None)
        repl.note(t("{key} removed", key=key))
    else:
        options[key] = value
        repl.note(f"{key} = {orjson.dumps(value).decode()}")


_MODE_NOTES = {
    "collapse": "reasoning: collapsed to one line once the answer starts",
    "show": "reasoning: shown in full, dimmed, before the answer",
    "hide": "reasoning: hidden",
}


async def _reasoning(repl: ChatRepl, argument: str) -> None:
    state = repl.state
    if not argument:
        repl.note(t(_MODE_NOTES[state.reasoning]) + t("; /reasoning collapse|show|hide changes it"))
        return
    mode = argument.lower()
    if mode not in MODES:
        raise CliError(
            t(
                "no reasoning mode {mode!r}; pick one of: {modes}",
                mode=argument,
                modes=", ".join(MODES),
            )
        )
    state.reasoning = mode
    repl.note(t(_MODE_NOTES[mode]))


async def _retry(repl: ChatRepl, _: str) -> None:
    await repl.retry()


async def _continue(repl: ChatRepl, _: str) -> None:
    await repl.continue_answer()


async def _new(repl: ChatRepl, _: str) -> None:
    repl.state.conversation_id = None
    repl.state.last_question = None
    repl.note(t("new conversation"))


async def _history(repl: ChatRepl, _: str) -> None:
    if not repl.state.conversation_id:
        repl.note(t("nothing yet in this conversation"))
        return
    __, messages = await repl.backend.conversation(repl.state.conversation_id)
    repl.show_messages(messages)


async def _copy(repl: ChatRepl, _: str) -> None:
    text = repl.state.last_answer
    if not text:
        raise CliError(t("no answer to copy yet"))
    how = clipboard.copy(text, repl.console.file)
    repl.note(t("copied {count:,} characters with {how}", count=len(text), how=how))


async def _save(repl: ChatRepl, argument: str) -> None:
    if not argument:
        raise CliError(t("/save needs a file name, e.g. /save notes.md"))
    if not repl.state.conversation_id:
        raise CliError(t("nothing to save yet; ask something first"))
    conversation, messages = await repl.backend.conversation(repl.state.conversation_id)
    fmt = "json" if argument.lower().endswith(".json") else "md"
    text = export_text(conversation, messages, fmt) + "\n"
    path = await asyncio.to_thread(_write, argument, text)
    repl.note(t("saved {count} messages to {path}", count=len(messages), path=path))


def _write(name: str, text: str) -> Path:
    path = Path(name).expanduser()
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        error = exc.strerror or exc
        raise CliError(
            t("cannot write {path}: {error}; pick another file", path=path, error=error)
        ) from None
    return path


async def _multi(repl: ChatRepl, _: str) -> None:
    state = repl.state
    state.multiline = not state.multiline
    if state.multiline:
        repl.note(t("multi-line mode: Enter adds a line, Esc-Enter sends; /multi to leave"))
    else:
        repl.note(t("single-line mode: Enter sends, Esc-Enter adds a line"))


_HANDLERS: dict[str, Handler] = {
    "/model": _model,
    "/system": _system,
    "/temperature": _temperature,
    "/option": _option,
    "/reasoning": _reasoning,
    "/retry": _retry,
    "/continue": _continue,
    "/new": _new,
    "/history": _history,
    "/copy": _copy,
    "/save": _save,
    "/multi": _multi,
    "/help": _help,
    "/exit": _exit,
    "/quit": _exit,
}


class SlashCompleter(Completer):
    """Tab completes command names, model names after /model and modes after /reasoning."""

    def __init__(self) -> None:
        self._models: list[str] = []

    def set_models(self, models: list[str]) -> None:
        self._models = models

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        text = document.text_before_cursor
        if not text.startswith("/") or "\n" in text:
            return
        for command, choices in (("/model ", self._models), ("/reasoning ", MODES)):
            if text.startswith(command):
                word = text[len(command) :]
                for name in choices:
                    if name.startswith(word):
                        yield Completion(name, -len(word))
                return
        if " " in text:
            return
        for name in COMMANDS:
            if name.startswith(text):
                yield Completion(name, -len(text), display_meta=t(COMMANDS[name][1]))
