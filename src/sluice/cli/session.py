"""Starting ``sluice chat``: pick the model, find the conversation to continue, show
where things are, and run the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from sluice.cli.backend import USAGE, Backend, CliError
from sluice.cli.history import latest_or
from sluice.cli.messages import t
from sluice.cli.repl import ChatRepl, ChatState
from sluice.cli.thinking import DEFAULT_MODE
from sluice.settings import Settings
from sluice.store.database import default_data_dir

#: Messages of a continued conversation shown when the chat starts.
RECAP = 2


@dataclass(frozen=True)
class ChatSettings:
    model: str | None
    system: str | None
    temperature: float | None
    options: dict[str, Any]
    resume: bool
    conversation: str | None
    #: How reasoning is drawn (``cli/thinking.py``).
    reasoning: str = DEFAULT_MODE


async def run_chat(
    backend: Backend, console: Console, chat: ChatSettings, settings: Settings
) -> None:
    models = await backend.models()  # with --url: is the gateway there at all?
    if chat.model is not None and chat.model not in models:
        listed = ", ".join(models)
        raise CliError(
            t("no model {name!r}; pick one of: {models}", name=chat.model, models=listed), USAGE
        )
    state = ChatState(
        model=chat.model or await backend.default_model(),
        system=chat.system,
        temperature=chat.temperature,
        options=dict(chat.options),
        reasoning=chat.reasoning,
    )
    recap: list[Any] = []
    title = ""
    if chat.resume or chat.conversation:
        conversation_id = await _conversation_to_continue(backend, console, chat)
        if conversation_id:
            info, messages = await backend.conversation(conversation_id)
            state.conversation_id = info.id
            # The model it was last answered with, if it is still configured.
            used = [m.model for m in messages if m.role == "assistant"] + [info.model]
            if chat.model is None:
                state.model = next((m for m in reversed(used) if m in models), state.model)
            # The system prompt and temperature kept with it (/system, /temperature),
            # unless given on the command line: shown by those commands, sent as they were.
            if chat.system is None:
                state.system = info.system_prompt
            kept = info.options.get("temperature")
            if chat.temperature is None and isinstance(kept, int | float):
                state.temperature = float(kept)
            title, recap = info.title or t("untitled"), messages[-RECAP:]
            questions = [m for m in messages if m.role == "user"]
            if questions:
                state.last_question, state.last_stored = questions[-1].content, True
            if messages and messages[-1].role == "assistant":
                state.last_answer = messages[-1].content
    data_dir = settings.data_dir or default_data_dir()
    repl = ChatRepl(backend, console, state, data_dir / "prompt_history")
    console.print(
        Text.assemble(
            ("sluice chat", "bold"),
            (
                t(" · {model} · conversations in {where}", model=state.model, where=backend.where),
                "dim",
            ),
            (t(" · /help for commands, Ctrl-D to quit"), "dim"),
        )
    )
    if title:
        shown = t("continuing “{title}” ({id})", title=title, id=state.conversation_id)
        console.print(Text(shown, style="dim"))
        console.print()
        repl.show_messages(recap)
    else:
        console.print()
    await repl.run()


async def _conversation_to_continue(
    backend: Backend, console: Console, chat: ChatSettings
) -> str | None:
    if chat.conversation:
        return await latest_or(backend, chat.conversation)
    latest = await backend.conversations(limit=1)
    if not latest:
        console.print(Text(t("No earlier conversation; starting a new one."), style="dim"))
        return None
    return latest[0].id
