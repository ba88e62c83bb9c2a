"""``sluice chat``: the read-eval-print loop.

Input is a prompt_toolkit session: line editing, history kept across sessions in the
data directory (Up, Ctrl-R), a paste kept whole however many lines it has, and an
explicit multi-line mode (``/multi``; Esc-Enter adds a line in either mode). Each
question is one chat turn on the backend; the answer streams through ``LiveAnswer``.

Keys while an answer streams: Ctrl-C stops it (the upstream call is cancelled, the
partial answer is kept as ``incomplete``) and comes back to the prompt; a second Ctrl-C
gives up waiting for the stop. At the prompt: Ctrl-C clears the line, or on an empty
line says how to quit (a second one quits); Ctrl-D or ``/exit`` quits.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.shortcuts import CompleteStyle
from prompt_toolkit.styles import Style as PromptStyle
from rich.console import Console
from rich.text import Text

from sluice.cli.answer import LiveAnswer
from sluice.cli.backend import Backend, CliError, Frame, MessageInfo, TurnStream
from sluice.cli.history import show_messages
from sluice.cli.messages import t
from sluice.cli.slash import SlashCompleter, run_command
from sluice.cli.thinking import DEFAULT_MODE

QUIT_HINT = "(To quit, press Ctrl-C again or Ctrl-D, or type /exit.)"
_PROMPT_STYLE = PromptStyle.from_dict({"model": "ansicyan bold", "arrow": "ansibrightblack"})


@dataclass
class ChatState:
    """What the next turn is sent with; the slash commands change it."""

    model: str
    system: str | None = None
    temperature: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    conversation_id: str | None = None
    multiline: bool = False
    #: How the model's reasoning is drawn: collapse, show or hide (``/reasoning``).
    reasoning: str = DEFAULT_MODE
    #: The last question sent, and whether it reached the store (so /retry regenerates
    #: the answer instead of asking again).
    last_question: str | None = None
    last_stored: bool = False
    last_answer: str = ""


class ChatRepl:
    def __init__(
        self, backend: Backend, console: Console, state: ChatState, history_file: Path
    ) -> None:
        self.backend = backend
        self.console = console
        self.state = state
        self.quit = False
        self._turn: TurnStream | None = None
        self._stopping = False
        self._work: asyncio.Task[None] | None = None
        self.completer = SlashCompleter()
        history_file.parent.mkdir(parents=True, exist_ok=True)
        self.session: PromptSession[str] = PromptSession(
            history=FileHistory(str(history_file)),
            auto_suggest=AutoSuggestFromHistory(),
            multiline=Condition(lambda: self.state.multiline),
            key_bindings=self._keys(),
            completer=self.completer,
            complete_while_typing=False,
            complete_style=CompleteStyle.READLINE_LIKE,
            prompt_continuation=self._continuation,
            style=_PROMPT_STYLE,
            enable_open_in_editor=True,
        )

    # -- the loop -------------------------------------------------------------

    async def run(self) -> None:
        self.completer.set_models(await self.backend.models())
        interrupted = False
        while not self.quit:
            try:
                text = await self.session.prompt_async(self._prompt)
            except KeyboardInterrupt:
                if interrupted:
                    break
                interrupted = True
                self.console.print(Text(t(QUIT_HINT), style="dim"))
                continue
            except EOFError:
                break
            interrupted = False
            if not text.strip():
                continue
            await self._guarded(self._handle(text))

    async def _handle(self, text: str) -> None:
        stripped = text.strip()
        if stripped.startswith("/") and not stripped.startswith("//"):
            await run_command(self, stripped)
        else:
            # "//" sends a message that starts with a slash.
            await self.send(text.removeprefix("/") if stripped.startswith("//") else text)

    async def _guarded(self, work: Coroutine[Any, Any, None]) -> None:
        """Run one command or turn; Ctrl-C stops it and comes back to the prompt."""
        loop = asyncio.get_running_loop()
        self._work = loop.create_task(work)
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        try:
            await self._work
        except asyncio.CancelledError:
            self.console.print(Text(t("stopped"), style="dim"))
        except CliError as exc:
            self.error(exc.message)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            self._work = None
            self._turn = None

    def _interrupt(self) -> None:
        if self._turn is not None and not self._stopping:
            self._stopping = True
            asyncio.get_running_loop().create_task(self._turn.stop())
        elif self._work is not None:
            # Nothing to stop politely (or the stop is taking too long): give up on it.
            self._work.cancel()

    # -- turns ----------------------------------------------------------------

    async def send(self, message: str) -> None:
        await self._turn_with({"message": message}, question=message)

    async def retry(self) -> None:
        state = self.state
        if state.last_question is None:
            self.error(t("nothing to retry yet; ask something first"))
            return
        if state.last_stored and state.conversation_id:
            await self._turn_with({"regenerate": True}, question=state.last_question)
        else:
            await self._turn_with({"message": state.last_question}, question=state.last_question)

    async def continue_answer(self) -> None:
        """Carry on the last answer (stopped, interrupted or cut off at max tokens): the
        new text is added to the same stored message, and printed after what was shown."""
        state = self.state
        if not state.conversation_id:
            self.error(t("nothing to continue yet; ask something first"))
            return
        __, messages = await self.backend.conversation(state.conversation_id)
        last = messages[-1] if messages else None
        if last is None or last.role != "assistant" or not last.content:
            self.error(t("there is no answer to continue; ask something"))
            return
        if last.status != "incomplete" and last.finish_reason != "length":
            self.error(t("the last answer is complete; /retry answers again"))
            return
        self.note(t("continuing the answer…"))
        question = state.last_question or ""
        await self._turn_with({"continue_id": last.id}, question=question, prefix=last.content)

    async def _turn_with(self, body: dict[str, Any], *, question: str, prefix: str = "") -> None:
        state = self.state
        body = {**body, "model": state.model}
        if state.conversation_id:
            body["conversation_id"] = state.conversation_id
        if state.system is not None:
            body["system"] = state.system
        options = dict(state.options)
        if state.temperature is not None:
            options["temperature"] = state.temperature
        if options:
            body["options"] = options
        if "message" in body:
            # A new question: stored only once the turn starts (a start frame).
            state.last_question, state.last_stored = question, False
        self._stopping = False
        started = time.monotonic()
        turn = await self.backend.turn(body)
        self._turn = turn
        answer = LiveAnswer(self.console, state.model, started=started, reasoning=state.reasoning)
        error: Frame | None = None
        notes: list[str] = []
        with _no_echo():
            async with answer, contextlib.aclosing(turn.frames()) as frames:
                async for frame in frames:
                    kind = frame.get("type")
                    if kind == "content":
                        answer.add(frame["content"])
                    elif kind == "reasoning":
                        answer.reasoning(frame["content"])
                    elif kind == "start":
                        state.conversation_id = frame.get("conversation_id")
                        state.last_stored = True
                    elif kind == "usage":
                        answer.usage(
                            frame["prompt_tokens"],
                            frame["completion_tokens"],
                            estimated=bool(frame.get("estimated")),
                        )
                    elif kind == "done":
                        answer.stats.finish_reason = frame.get("finish_reason")
                    elif kind == "error":
                        error = frame
                    elif kind == "failover":
                        notes.append(
                            t(
                                "continued on {to} after {source} failed",
                                to=frame["to"],
                                source=frame["from"],
                            )
                        )
                    elif kind == "tool_call":
                        answer.tool_call(frame)
        # A continued answer is one message: its earlier text, then the new.
        state.last_answer = prefix + answer.text()
        for note in notes:
            self.console.print(Text(note, style="dim"))
        if error is not None:
            kept = t("the partial answer is kept; ") if answer.text() else ""
            message = error.get("message") or t("the answer failed")
            if error.get("hint"):
                message = f"{message}; {error['hint']}"
            self.error(t("{message} — {kept}/retry to try again", message=message, kept=kept))
        if answer.text() and (error or answer.stats.finish_reason in ("incomplete", "length")):
            self.note(t("/continue carries the answer on"))
        self.console.print()

    # -- output ---------------------------------------------------------------

    def error(self, message: str) -> None:
        self.console.print(Text("✗ ", style="bold red") + Text(message, style="red"))

    def note(self, message: str) -> None:
        self.console.print(Text(message, style="dim"))

    def show_messages(self, messages: list[MessageInfo]) -> None:
        show_messages(self.console, messages)

    # -- prompt ---------------------------------------------------------------

    def _prompt(self) -> FormattedText:
        arrow = " ⋯ " if self.state.multiline else " › "
        return FormattedText([("class:model", self.state.model), ("class:arrow", arrow)])

    def _continuation(self, width: int, line_number: int, wrap_count: int) -> FormattedText:
        return FormattedText([("class:arrow", "… ".rjust(width))])

    def _keys(self) -> KeyBindings:
        keys = KeyBindings()

        @keys.add("c-c")
        def _interrupt(event: KeyPressEvent) -> None:
            buffer = event.app.current_buffer
            if buffer.text:
                buffer.reset()
            else:
                event.app.exit(exception=KeyboardInterrupt())

        @keys.add("escape", "enter", filter=Condition(lambda: not self.state.multiline))
        def _newline(event: KeyPressEvent) -> None:
            event.app.current_buffer.insert_text("\n")

        @Condition
        def command_in_multiline() -> bool:
            text = get_app().current_buffer.text
            return self.state.multiline and text.startswith("/") and "\n" not in text

        @keys.add("enter", filter=command_in_multiline)
        def _command(event: KeyPressEvent) -> None:
            # A /command is one line: Enter runs it even in multi-line mode.
            event.app.current_buffer.validate_and_handle()

        return keys


@contextlib.contextmanager
def _no_echo() -> Iterator[None]:
    """While an answer streams, keys typed are not echoed into it (nor is ^C). Type-ahead
    is kept for the next prompt; Ctrl-C still interrupts."""
    try:
        import termios

        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
    except (ImportError, OSError, ValueError):
        yield
        return
    quiet = list(saved)
    quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
    termios.tcsetattr(fd, termios.TCSANOW, quiet)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
