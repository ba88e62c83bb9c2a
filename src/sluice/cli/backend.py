"""What the terminal commands talk to: the engine in this process, or a running gateway.

::

    Backend                     local.LocalBackend      remote.RemoteBackend (--url)
      models()                  the configured models   GET /v1/models
      turn(body) -> TurnStream  ChatService.start       POST /chat (SSE)
        frames()                the turn's frames       the SSE events
        stop()                  Generation.cancel()     POST /v1/streams/{id}/cancel
      chunks(body)              Engine + ChunkEncoder   POST /v1/chat/completions
      conversations(), conversation(id)   the store     /v1/conversations

Both speak the chat app protocol (``wire/chat_frames.py``) for turns and OpenAI chunk
objects for one-shot asks, so the REPL and ``sluice ask`` never know which one they have.
Failures the user must act on are a ``CliError``: one line, and the exit code.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from sluice.errors import ModelNotFound, NotFound, RequestError, SluiceError

Frame = dict[str, Any]

#: Exit codes: a failure at run time, and a command used wrongly.
RUNTIME, USAGE = 1, 2


class CliError(Exception):
    """A failure the user must act on: ``message`` says what failed and what to do."""

    def __init__(self, message: str, code: int = RUNTIME) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class ConversationInfo:
    id: str
    title: str
    model: str | None
    system_prompt: str | None
    created_at: float
    updated_at: float
    #: The model options kept with it (temperature…), sent with each of its turns.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MessageInfo:
    id: str
    role: str
    content: str
    model: str | None = None
    status: str = "complete"
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    duration_ms: float | None = None
    error: str | None = None
    created_at: float = 0.0
    #: Which version of this message is shown (regenerated answers are siblings).
    version: int = 1
    versions: int = 1


class TurnStream(Protocol):
    """One chat turn being answered."""

    def frames(self) -> AsyncGenerator[Frame, None]:
        """start, content…, usage, then done or error; a lost connection is an error
        frame with ``error_type`` ``connection_error``."""
        ...

    async def stop(self) -> None:
        """Stop the answer (the upstream call is cancelled); frames then end with a
        done frame whose finish reason is ``incomplete``."""
        ...


class Backend(Protocol):
    #: What ``where`` the conversations live, for messages: a path or a URL.
    where: str

    async def models(self) -> list[str]: ...

    async def default_model(self) -> str: ...

    async def turn(self, body: dict[str, Any]) -> TurnStream: ...

    def chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """OpenAI ``chat.completion.chunk`` objects of one stateless answer (usage last;
        a failure is a final ``{"error": …}`` object). Closing the iterator cancels."""
        ...

    async def conversations(
        self, *, query: str | None = None, limit: int = 50
    ) -> list[ConversationInfo]: ...

    async def conversation(
        self, conversation_id: str
    ) -> tuple[ConversationInfo, list[MessageInfo]]:
        """The conversation and the messages of its shown branch, oldest first."""
        ...

    async def aclose(self) -> None: ...


async def resolve_conversation(backend: Backend, given: str) -> str:
    """A full conversation id from an id or a unique prefix of a recent one."""
    found = await backend.conversations(limit=200)
    if any(c.id == given for c in found) or len(given) >= 24:
        return given
    matching = [c.id for c in found if c.id.startswith(given)]
    if len(matching) == 1:
        return matching[0]
    if not matching:
        raise CliError(
            f"no conversation with id {given!r}; list them with `sluice history list`", USAGE
        )
    raise CliError(f"{given!r} matches {len(matching)} conversations; give more of the id", USAGE)


def cli_error(exc: SluiceError, *, models: list[str] | None = None) -> CliError:
    """A library error as one line with what to do, and its exit code."""
    message = exc.message.rstrip(".")
    if isinstance(exc, ModelNotFound) or exc.code == "model_not_found":
        known = f"; pick one of: {', '.join(models)}" if models else ""
        return CliError(f"{message}{known} (models come from --config or SLUICE_MODELS)", USAGE)
    if isinstance(exc, NotFound) and exc.param in ("conversation_id", "id"):
        return CliError(f"{message}; list them with `sluice history list`", USAGE)
    if exc.hint is not None:
        # An upstream failure: what to check (the one table of recommendations), then
        # what to do now.
        return CliError(f"{message}; {exc.hint}; try again, or pick another model with -m")
    if isinstance(exc, RequestError) or exc.status in (400, 404, 413, 422):
        return CliError(f"the request was refused: {message}", USAGE)
    if exc.status in (401, 403):
        return CliError(f"the gateway refused the request: {message}; check --key", USAGE)
    if exc.status == 429:
        return CliError(f"rate limited: {message}; wait a moment and try again")
    return CliError(f"{message}; try again, or pick another model with -m")
