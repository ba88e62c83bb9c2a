"""One chat turn, end to end: find or create the conversation, fit the history into the
model's context, store the question, start a detached generation, and save the answer as
it streams. Regenerate and edit-and-resend are turns too: they add siblings in the
message tree instead of overwriting anything. Continue is the one turn that writes into
an existing answer: the model is asked to carry on from its partial text (as failover
does) and the new text is appended to the same message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sluice.cache.key import CacheControl
from sluice.cache.responses import Decision, ResponseCache
from sluice.chat.attachments import checked, masked_files, merged, parts
from sluice.chat.continuing import ContinuingSaver
from sluice.chat.plan import Plan, history_messages, plan_turn, typed
from sluice.chat.saver import Saver
from sluice.chat.titles import title_from
from sluice.chat.turns import TURN_OPTIONS, Edit, TurnRequest, parse_turn
from sluice.chat.window import window
from sluice.engine.engine import Engine
from sluice.engine.generation import Allowance, Generation, continuation
from sluice.errors import NotFound
from sluice.owners import visible_to
from sluice.policy.access import OPEN, Principal
from sluice.policy.quota import Quota, Ticket
from sluice.store.conversations import Conversation, ConversationStore, Message, new_id
from sluice.tokens import estimate_message_tokens
from sluice.wire.openai_request import ChatRequest, chat_request_from_body

__all__ = ["TURN_OPTIONS", "ChatService", "Edit", "Turn", "TurnRequest", "parse_turn"]


@dataclass(frozen=True, slots=True)
class Turn:
    generation: Generation
    conversation_id: str | None
    message_id: str | None
    model: str
    #: Where the answer comes from (the response cache's decision), when a cache is on.
    decision: Decision | None = None
    #: A continue turn's stored text before the new text (the done frame reports both).
    prefix: str = ""

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.decision.headers if self.decision is not None else []


class ChatService:
    def __init__(
        self,
        engine: Engine,
        store: ConversationStore,
        *,
        quota: Quota | None = None,
        cache: ResponseCache | None = None,
        save_interval: float = 1.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self._quota = quota
        #: Without one (embedding, some tests) every turn asks the model.
        self._cache = cache
        self._save_interval = save_interval
        self._savers: set[Saver] = set()

    def parse(self, data: Any) -> TurnRequest:
        """A turn's body, checked against this gateway's limits (see ``parse_turn``)."""
        return parse_turn(data, max_json_bytes=self.engine.settings.max_json_bytes)

    def _model(self, requested: str | None, conversation_model: str | None = None) -> str:
        model = requested or conversation_model or self.engine.default_model
        self.engine.provider(model)  # 404 for an unknown model, before anything is stored
        return model

    async def _decide(
        self, request: ChatRequest, principal: Principal, control: CacheControl, paced: bool
    ) -> Decision | None:
        if self._cache is None:
            return None
        plan = self._cache.plan(request, principal.owner, control)
        allowed = principal.key.allows if principal.key else None
        return await self._cache.decide(request, plan, paced=paced, allowed=allowed)

    async def _admit(
        self, principal: Principal, request: ChatRequest, decision: Decision | None
    ) -> tuple[Ticket | None, Allowance | None]:
        if self._quota is None:
            return None, None
        try:
            ticket = await self._quota.admit(
                principal,
                request.model,
                request.messages,
                request.max_tokens,
                spends=not (decision and decision.costs_nothing),
            )
        except BaseException:
            if decision is not None:
                decision.release()
            raise
        return ticket, ticket.allowance

    def _finishers(
        self, ticket: Ticket | None, decision: Decision | None
    ) -> list[Callable[[Generation], None]]:
        hooks: list[Callable[[Generation], None]] = []
        if self._quota is not None and ticket is not None:
            hooks.append(self._quota.finisher(ticket))
        if self._cache is not None and decision is not None:
            hooks += self._cache.finishers(decision)
        return hooks

    def _track(self, generation: Generation, decision: Decision | None) -> None:
        if self._cache is not None and decision is not None:
            self._cache.started(generation, decision)

    def _release(self, ticket: Ticket | None, decision: Decision | None) -> None:
        if self._quota is not None and ticket is not None:
            self._quota.release(ticket)
        if decision is not None:
            decision.release()

    def _meter(self, generation: Generation, principal: Principal, ticket: Ticket | None) -> None:
        if self._quota is not None and ticket is not None:
            self._quota.meter(generation, principal, ticket)

    async def start(
        self,
        turn: TurnRequest,
        principal: Principal = OPEN,
        control: CacheControl | None = None,
        *,
        paced: bool = False,
    ) -> Turn:
        """Start a turn. ``control`` is the request's ``Cache-Control``; a regenerate
        always asks for a fresh answer (it is never the cached one again)."""
        control = control or CacheControl()
        # Files are checked before anything is stored (or a conversation created).
        files = checked(turn.attachments)
        if turn.regenerate:
            control = CacheControl(no_store=control.no_store, no_cache=True)
        if turn.messages is not None:
            return await self._stateless(turn, principal, control, paced)
        if turn.conversation_id:
            # Another owner's conversation is "not found", like one that never was.
            reach = None if principal.admin else visible_to(principal.owner)
            try:
                conversation = await self.store.conversation(turn.conversation_id, reach)
            except NotFound as exc:
                raise NotFound(exc.message, param="conversation_id") from None
            return await self._turn(turn, conversation, principal, control, paced, files)
        self._model(turn.model)
        conversation = await self.store.create_conversation(
            owner=principal.owner,
            system_prompt=turn.system,
            model=turn.model,
            options=turn.options or {},
        )
        try:
            return await self._turn(turn, conversation, principal, control, paced, files)
        except Exception:
            # A first turn that could not start leaves no empty conversation behind.
            await self.store.delete_conversation(conversation.id)
            raise

    async def _turn(
        self,
        turn: TurnRequest,
        conversation: Conversation,
        principal: Principal,
        control: CacheControl,
        paced: bool,
        files: list[dict[str, Any]] | None = None,
    ) -> Turn:
        model = self._model(turn.model, conversation.model)
        system = turn.system if turn.system is not None else conversation.system_prompt
        options = {**conversation.options, **(turn.options or {})}
        plan = await plan_turn(self.store, self._savers, turn, conversation.id, files)
        new: dict[str, Any] = {"role": "user", "content": plan.question}
        if plan.attachments:
            # Parts while the guardrails read it: the question's own (masked) text stays
            # apart from the files' for storing; merged into what the model reads below.
            new["content"] = parts(plan.question, plan.attachments)
        history = history_messages(plan.history)
        budget = self.engine.config(model).context_tokens
        prefix = plan.extends.content if plan.extends else ""
        if plan.extends:
            # The partial answer and the request to carry on take their share of it.
            budget -= estimate_message_tokens({"role": "assistant", "content": prefix}) + 32
        # Fits the context (or a 400 naming the limit) before anything is stored.
        messages = window(system, history, new, budget=budget)
        asked = len(messages) - 1
        request = chat_request_from_body(
            {**options, "model": model, "messages": messages, "stream": True}
        )
        if plan.extends:
            request = continuation(request, prefix)
        rules = self.engine.guardrails.select(model, principal.key_names)
        request = await self.engine.guardrails.check_input(request, rules)
        content = request.messages[asked]["content"]
        if plan.attachments:
            # Stored as sent: a mask in a file's text or name reaches the stored file too.
            plan = replace(plan, attachments=masked_files(plan.attachments, content))
            request.messages[asked] = {**request.messages[asked], "content": merged(content)}
        # The question is stored as the model saw it: masked.
        question = plan.question if plan.extends else typed(content)
        decision = await self._decide(request, principal, control, paced)
        # Admitted (key, limits, budget) before anything is stored.
        ticket, allowance = await self._admit(principal, request, decision)
        answer_id = plan.extends.id if plan.extends else new_id()
        try:
            generation = self.engine.start(
                request,
                policy="detach",
                format="chat",
                conversation_id=conversation.id,
                message_id=answer_id,
                allowance=allowance,
                # The stream belongs to the conversation's owner (the admin may write into
                # someone's conversation; its owner still reads the answer).
                owner=conversation.owner,
                allowed=principal.key.allows if principal.key else None,
                on_finish=self._finishers(ticket, decision),
                source=decision.source if decision else None,
                guard=rules.output,
            )
        except BaseException:
            self._release(ticket, decision)
            raise
        self._track(generation, decision)
        self._meter(generation, principal, ticket)
        try:
            if plan.extends:
                await self.store.update_message(
                    answer_id,
                    status="streaming",
                    stream_id=generation.id,
                    finish_reason=None,
                    error=None,
                    model=model,
                )
            else:
                await self._store_turn(
                    conversation.id, plan, question, answer_id, model, generation
                )
        except BaseException:
            # Nothing half-written runs on: an answer nobody could ever read is stopped.
            generation.cancel()
            raise
        saver = ContinuingSaver(
            prefix, generation, self.store, answer_id, interval=self._save_interval
        )
        self._savers.add(saver)
        saver.task.add_done_callback(lambda _: self._savers.discard(saver))
        if not conversation.title:
            await self.store.update_conversation(conversation.id, title=title_from(question))
        return Turn(generation, conversation.id, answer_id, model, decision, prefix)

    async def _store_turn(
        self,
        conversation_id: str,
        plan: Plan,
        question: str,
        answer_id: str,
        model: str,
        generation: Generation,
    ) -> None:
        parent = plan.reuse
        if parent is None:
            stored = await self.store.add_message(
                Message(
                    new_id(),
                    conversation_id,
                    plan.parent,
                    "user",
                    question,
                    attachments=plan.attachments,
                )
            )
            parent = stored.id
        await self.store.add_message(
            Message(
                answer_id,
                conversation_id,
                parent,
                "assistant",
                "",
                model=model,
                status="streaming",
                stream_id=generation.id,
            )
        )

    async def _stateless(
        self, turn: TurnRequest, principal: Principal, control: CacheControl, paced: bool
    ) -> Turn:
        model = self._model(turn.model)
        messages = list(turn.messages or [])
        if turn.system:
            messages.insert(0, {"role": "system", "content": turn.system})
        request = chat_request_from_body(
            {**(turn.options or {}), "model": model, "messages": messages, "stream": True}
        )
        rules = self.engine.guardrails.select(model, principal.key_names)
        request = await self.engine.guardrails.check_input(request, rules)
        decision = await self._decide(request, principal, control, paced)
        ticket, allowance = await self._admit(principal, request, decision)
        try:
            generation = self.engine.start(
                request,
                policy="detach",
                format="chat",
                allowance=allowance,
                owner=principal.owner,
                allowed=principal.key.allows if principal.key else None,
                on_finish=self._finishers(ticket, decision),
                source=decision.source if decision else None,
                guard=rules.output,
            )
        except BaseException:
            self._release(ticket, decision)
            raise
        self._track(generation, decision)
        self._meter(generation, principal, ticket)
        return Turn(generation, None, None, model, decision)

    async def settle(self) -> None:
        """Wait for every answer being saved (shutdown: nothing half-written)."""
        for saver in list(self._savers):
            await saver.task
