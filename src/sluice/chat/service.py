"""One chat turn, end to end: find or create the conversation, fit the history into the
model's context, store the question, start a detached generation, and save the answer as
it streams. Regenerate and edit-and-resend are turns too: they add siblings in the
message tree instead of overwriting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sluice.chat.saver import Saver
from sluice.chat.titles import title_from
from sluice.chat.window import window
from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.errors import NotFound, RequestError
from sluice.policy.access import OPEN, Principal
from sluice.policy.quota import Quota, Ticket
from sluice.store.conversations import Conversation, ConversationStore, Message, new_id
from sluice.wire.openai_request import ChatRequest, chat_request_from_body

#: Options a turn may set on the model call (the rest of the OpenAI body is the gateway's).
TURN_OPTIONS = {
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "tools",
    "tool_choice",
    "sim",
}


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    message_id: str = Field(min_length=1)
    content: str = Field(min_length=1)


class TurnRequest(BaseModel):
    """The body of ``POST /chat`` and of a WebSocket ``chat`` frame."""

    model_config = ConfigDict(extra="forbid", strict=True)

    conversation_id: str | None = None
    message: str | None = Field(default=None, min_length=1)
    messages: list[dict[str, Any]] | None = None
    model: str | None = None
    system: str | None = None
    options: dict[str, Any] | None = None
    #: Answer the last question again (a new version of the last answer).
    regenerate: bool = False
    #: Replace an earlier question (a new version of it) and answer that.
    edit: Edit | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> TurnRequest:
        kinds = sum(
            [self.message is not None, self.messages is not None, self.regenerate, bool(self.edit)]
        )
        if kinds != 1:
            raise ValueError("give exactly one of message, messages, regenerate, edit")
        if (self.regenerate or self.edit) and not self.conversation_id:
            raise ValueError("regenerate and edit need a conversation_id")
        if self.messages is not None and self.conversation_id:
            raise ValueError("messages (a stateless turn) cannot go with a conversation_id")
        unknown = set(self.options or {}) - TURN_OPTIONS
        if unknown:
            raise ValueError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return self


def parse_turn(data: Any) -> TurnRequest:
    try:
        return TurnRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = ".".join(str(part) for part in error["loc"]) or None
        message = error["msg"].removeprefix("Value error, ")
        raise RequestError(
            f"Invalid value for '{loc}': {message}" if loc else message, param=loc
        ) from None


@dataclass(frozen=True, slots=True)
class _Plan:
    history: list[Message]
    question: str
    #: Where a new question goes in the tree.
    parent: str | None
    #: An existing question to answer again (regenerate) instead of storing a new one.
    reuse: str | None


@dataclass(frozen=True, slots=True)
class Turn:
    generation: Generation
    conversation_id: str | None
    message_id: str | None
    model: str


class ChatService:
    def __init__(
        self,
        engine: Engine,
        store: ConversationStore,
        *,
        quota: Quota | None = None,
        save_interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self._quota = quota
        self._save_interval = save_interval
        self._savers: set[Saver] = set()

    def _model(self, requested: str | None, conversation_model: str | None = None) -> str:
        model = requested or conversation_model or self.engine.default_model
        self.engine.provider(model)  # 404 for an unknown model, before anything is stored
        return model

    async def _admit(
        self, principal: Principal, request: ChatRequest
    ) -> tuple[Ticket | None, int | None]:
        if self._quota is None:
            return None, None
        ticket = await self._quota.admit(
            principal, request.model, request.messages, request.max_tokens
        )
        return ticket, ticket.allowance

    def _meter(self, generation: Generation, principal: Principal, ticket: Ticket | None) -> None:
        if self._quota is not None and ticket is not None:
            self._quota.meter(generation, principal, ticket)

    async def start(self, turn: TurnRequest, principal: Principal = OPEN) -> Turn:
        if turn.messages is not None:
            return await self._stateless(turn, principal)
        if turn.conversation_id:
            try:
                conversation = await self.store.conversation(turn.conversation_id)
            except NotFound as exc:
                raise NotFound(exc.message, param="conversation_id") from None
            return await self._turn(turn, conversation, principal)
        self._model(turn.model)
        conversation = await self.store.create_conversation(
            system_prompt=turn.system, model=turn.model, options=turn.options or {}
        )
        try:
            return await self._turn(turn, conversation, principal)
        except Exception:
            # A first turn that could not start leaves no empty conversation behind.
            await self.store.delete_conversation(conversation.id)
            raise

    async def _turn(
        self, turn: TurnRequest, conversation: Conversation, principal: Principal
    ) -> Turn:
        model = self._model(turn.model, conversation.model)
        system = turn.system if turn.system is not None else conversation.system_prompt
        options = {**conversation.options, **(turn.options or {})}
        plan = await self._plan(turn, conversation.id)
        new = {"role": "user", "content": plan.question}
        history = [_as_message(m) for m in plan.history if _usable(m)]
        budget = self.engine.config(model).context_tokens
        # Fits the context (or a 400 naming the limit) before anything is stored.
        messages = window(system, history, new, budget=budget)
        request = chat_request_from_body(
            {**options, "model": model, "messages": messages, "stream": True}
        )
        # Admitted (key, limits, budget) before anything is stored.
        ticket, allowance = await self._admit(principal, request)
        parent = plan.reuse
        if parent is None:
            stored = await self.store.add_message(
                Message(new_id(), conversation.id, plan.parent, "user", plan.question)
            )
            parent = stored.id
        answer_id = new_id()
        generation = self.engine.start(
            request,
            policy="detach",
            format="chat",
            context={"conversation_id": conversation.id, "message_id": answer_id},
            allowance=allowance,
        )
        self._meter(generation, principal, ticket)
        await self.store.add_message(
            Message(
                answer_id,
                conversation.id,
                parent,
                "assistant",
                "",
                model=model,
                status="streaming",
                stream_id=generation.id,
            )
        )
        saver = Saver(generation, self.store, answer_id, interval=self._save_interval)
        self._savers.add(saver)
        saver.task.add_done_callback(lambda _: self._savers.discard(saver))
        if not conversation.title:
            await self.store.update_conversation(conversation.id, title=title_from(plan.question))
        return Turn(generation, conversation.id, answer_id, model)

    async def _plan(self, turn: TurnRequest, conversation_id: str) -> _Plan:
        path = await self.store.path(conversation_id)
        if turn.regenerate:
            asked = [i for i, m in enumerate(path) if m.role == "user"]
            if not asked:
                raise RequestError("There is no question to answer again.", param="regenerate")
            question = path[asked[-1]]
            return _Plan(path[: asked[-1]], question.content, question.parent_id, question.id)
        if turn.edit is not None:
            target = await self.store.message(turn.edit.message_id)
            if target.conversation_id != conversation_id or target.role != "user":
                raise RequestError(
                    "edit.message_id must be a question (user message) of this conversation.",
                    param="edit.message_id",
                )
            before = (
                await self.store.path(conversation_id, target.parent_id) if target.parent_id else []
            )
            return _Plan(before, turn.edit.content, target.parent_id, None)
        assert turn.message is not None
        return _Plan(path, turn.message, path[-1].id if path else None, None)

    async def _stateless(self, turn: TurnRequest, principal: Principal) -> Turn:
        model = self._model(turn.model)
        messages = list(turn.messages or [])
        if turn.system:
            messages.insert(0, {"role": "system", "content": turn.system})
        request = chat_request_from_body(
            {**(turn.options or {}), "model": model, "messages": messages, "stream": True}
        )
        ticket, allowance = await self._admit(principal, request)
        generation = self.engine.start(request, policy="detach", format="chat", allowance=allowance)
        self._meter(generation, principal, ticket)
        return Turn(generation, None, None, model)

    async def settle(self) -> None:
        """Wait for every answer being saved (shutdown: nothing half-written)."""
        for saver in list(self._savers):
            await saver.task


def _usable(message: Message) -> bool:
    # Failed answers and empty placeholders are not history the model should see.
    return bool(message.content) and message.status != "failed"


def _as_message(message: Message) -> dict[str, Any]:
    return {"role": message.role, "content": message.content}
