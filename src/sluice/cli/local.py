"""The in-process backend: the engine and the store in this process, no server.

Built through the composition root (``sluice.runtime``), like ``sluice serve``: the store
is the one the gateway uses with the same settings (SQLite in the data directory, or
``SLUICE_DATABASE_URL``), so the terminal and the web page share conversations. It is
opened (and migrated) only when a command needs it: ``sluice ask`` is stateless and
never touches it. Answers are read as events, in this process: no bytes are written to
be parsed back.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from sluice.chat.frames import turn_frames
from sluice.chat.service import ChatService, Turn
from sluice.cli.backend import CliError, ConversationInfo, Frame, MessageInfo, cli_error
from sluice.errors import SluiceError
from sluice.owners import LOCAL, visible_to
from sluice.policy.access import local_user
from sluice.runtime import Runtime
from sluice.settings import Settings
from sluice.store.conversations import Conversation, Message, branch
from sluice.store.database import default_data_dir, migrate
from sluice.wire.openai_chunks import ChunkObjects
from sluice.wire.openai_request import chat_request_from_body


class LocalTurn:
    def __init__(self, turn: Turn) -> None:
        self.turn = turn

    async def frames(self) -> AsyncGenerator[Frame, None]:
        async for frame in turn_frames(self.turn):
            yield frame

    async def stop(self) -> None:
        # Chat turns are detached generations: nobody's leaving cancels them, so stop
        # says so explicitly. The partial answer is saved as `incomplete`.
        self.turn.generation.cancel()


class LocalBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runtime = Runtime.build(settings)
        self.engine = self.runtime.engine
        self.where = (
            "the database at SLUICE_DATABASE_URL"
            if settings.database_url
            else str((settings.data_dir or default_data_dir()) / "sluice.db")
        )
        self._chat: ChatService | None = None
        #: Decided when the store opens (see policy.access.local_user).
        self._principal = local_user(auth_required=True)

    async def _service(self) -> ChatService:
        if self._chat is None:
            runtime = self.runtime
            try:
                await migrate(runtime.store.engine)
                # Answers a crashed terminal or server left `streaming`: only old ones,
                # so a gateway running on the same store keeps its live answers.
                await runtime.store.recover_interrupted(30.0)
            except Exception as exc:  # any driver or file error: the store is unusable
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise CliError(
                    f"cannot open the conversation store ({self.where}): {reason}; "
                    "check --data-dir or SLUICE_DATABASE_URL"
                ) from None
            self._principal = local_user(await runtime.keys.auth_required())
            self._chat = runtime.chat
        return self._chat

    async def models(self) -> list[str]:
        return [m.name for m in self.engine.models()]

    async def default_model(self) -> str:
        return self.engine.default_model

    async def turn(self, body: dict[str, Any]) -> LocalTurn:
        chat = await self._service()
        try:
            return LocalTurn(await chat.start(chat.parse(body), self._principal))
        except SluiceError as exc:
            raise cli_error(exc, models=await self.models()) from None

    async def chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        try:
            request = chat_request_from_body(
                {**body, "stream": True, "stream_options": {"include_usage": True}}
            )
            generation = self.engine.start(request, owner=self._principal.owner)
        except SluiceError as exc:
            raise cli_error(exc, models=await self.models()) from None
        # The same chunk objects /v1/chat/completions would send, built from the events.
        objects = ChunkObjects(
            generation.info.completion_id,
            generation.info.created,
            request.model,
            include_usage=True,
        )
        async for event in self.engine.follow(generation):
            chunk = objects.chunk(event)
            if chunk is not None:
                yield chunk

    async def conversations(
        self, *, query: str | None = None, limit: int = 50
    ) -> list[ConversationInfo]:
        chat = await self._service()
        # Newest first: the terminal has no pins ("-c" is the latest conversation).
        found = await chat.store.conversations(
            owners=visible_to(LOCAL), query=query, limit=limit, pinned_first=False
        )
        return [_conversation(c) for c in found]

    async def conversation(
        self, conversation_id: str
    ) -> tuple[ConversationInfo, list[MessageInfo]]:
        chat = await self._service()
        try:
            conversation = await chat.store.conversation(conversation_id)
        except SluiceError as exc:
            raise cli_error(exc) from None
        tree = await chat.store.tree(conversation_id)
        path = branch(tree, conversation.leaf_id)
        places: dict[tuple[str | None, str], list[str]] = {}
        for message in tree:
            places.setdefault((message.parent_id, message.role), []).append(message.id)
        messages = [_message(m, places[(m.parent_id, m.role)]) for m in path]
        return _conversation(conversation), messages

    async def save_settings(
        self, conversation_id: str, changes: dict[str, Any], options: dict[str, Any]
    ) -> None:
        chat = await self._service()
        try:
            if options:
                stored = (await chat.store.conversation(conversation_id)).options
                changes = {**changes, "options": _merged(stored, options)}
            if changes:
                await chat.store.update_conversation(conversation_id, **changes)
        except SluiceError as exc:
            raise cli_error(exc) from None

    async def aclose(self) -> None:
        await self.runtime.aclose()


def _merged(options: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = {**options, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def _conversation(c: Conversation) -> ConversationInfo:
    return ConversationInfo(
        c.id, c.title, c.model, c.system_prompt, c.created_at, c.updated_at, dict(c.options)
    )


def _message(m: Message, versions: list[str]) -> MessageInfo:
    return MessageInfo(
        id=m.id,
        role=m.role,
        content=m.content,
        model=m.model,
        status=m.status,
        finish_reason=m.finish_reason,
        prompt_tokens=m.prompt_tokens,
        completion_tokens=m.completion_tokens,
        ttft_ms=m.ttft_ms,
        duration_ms=m.duration_ms,
        error=m.error,
        created_at=m.created_at,
        version=versions.index(m.id) + 1,
        versions=len(versions),
    )
