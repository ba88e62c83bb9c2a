"""Engine: models -> providers, and the generations running on them.

The HTTP edges, the terminal and embedding programs all go through one Engine. It is
built from Settings (explicitly, no environment reads) by the composition root
(``sluice.runtime``), which hands it the shared event logs; it owns the shared upstream
HTTP client and the table of live generations (for stop and resume by id). It changes
nothing process-wide: GC and allocator tuning belong to the server (``http/memory.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from sluice import providers
from sluice.engine.generation import (
    Allowance,
    AttemptHook,
    Generation,
    Opener,
    State,
    new_id,
)
from sluice.engine.retry import Candidate, Cooldowns, RetryState
from sluice.engine.stats import RecentAnswers
from sluice.engine.stream import LocalStream, SharedStream, Stream, StreamInfo, batches
from sluice.errors import ModelNotFound, NotFound, ShuttingDown, SluiceError, Unavailable
from sluice.events import Event
from sluice.guard.guardrails import Guardrails
from sluice.guard.rules import Rule
from sluice.owners import ANONYMOUS, may_reach
from sluice.providers.base import VALIDATE, Provider, ProviderContext, ProviderFactory
from sluice.providers.http_client import HttpClient
from sluice.providers.upstream_errors import upstream_of
from sluice.settings import DisconnectPolicy, ModelConfig, Settings
from sluice.store.shared_log import IF_IDLE, RedisEventLogs, StreamMeta
from sluice.wire.openai_request import ChatRequest

logger = logging.getLogger("sluice.engine")


class AnswerObserver(Protocol):
    """Told when each answer starts and ends (metrics); must not raise or block."""

    def answer_started(self, generation: Generation) -> None: ...

    def answer_finished(self, generation: Generation) -> None: ...


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    provider: str
    created: int


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        factories: dict[str, ProviderFactory] | None = None,
        shared: RedisEventLogs | None = None,
        observer: AnswerObserver | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer
        #: Told of every upstream attempt (traces); None when tracing is off.
        self.on_attempt = on_attempt
        self.http = HttpClient()
        #: Input and output rules (``[[guardrails]]``); the engine guards every answer.
        self.guardrails = Guardrails(
            settings.guardrails, window=settings.guardrail_window, http=self.http
        )
        context = ProviderContext(http=self.http, settings=settings)
        found = providers.available() if factories is None else factories
        self._configs: dict[str, ModelConfig] = {m.name: m for m in settings.models}
        self._providers: dict[str, Provider] = {
            m.name: providers.build(m, context, found) for m in settings.models
        }
        self._candidates = {
            m.name: Candidate(m.name, m.retry, m.cooldown, m.failover, upstream_of(m))
            for m in settings.models
        }
        self.cooldowns = Cooldowns()
        self._generations: dict[str, Generation] = {}
        #: Generations not yet done: counted, since the capacity check runs per start.
        self._active = 0
        #: The event logs other instances can resume from (Redis), when configured;
        #: built and closed by whoever built the engine (``sluice.runtime``).
        self.shared = shared
        self._retention = settings.stream_retention_seconds
        self.recent = RecentAnswers()

    # -- models -------------------------------------------------------------

    def models(self) -> list[ModelConfig]:
        return list(self._configs.values())

    @property
    def default_model(self) -> str:
        return self.settings.default_model or next(iter(self._configs))

    def config(self, model: str) -> ModelConfig:
        self.provider(model)
        return self._configs[model]

    def provider(self, model: str) -> Provider:
        provider = self._providers.get(model)
        if provider is None:
            raise ModelNotFound(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
            )
        return provider

    # -- generations --------------------------------------------------------

    def _open_attempt(
        self, candidate: Candidate, request: ChatRequest
    ) -> AsyncIterator[list[Event]]:
        return self._providers[candidate.name].stream(request)

    def _guarded(self, opener: Opener, rules: list[Rule]) -> Opener:
        guardrails = self.guardrails

        def guarded(candidate: Candidate, request: ChatRequest) -> AsyncIterator[list[Event]]:
            return guardrails.guard(opener(candidate, request), rules, request.messages)

        return guarded

    def start(
        self,
        request: ChatRequest,
        *,
        policy: DisconnectPolicy = "cancel",
        format: str = "openai",
        conversation_id: str | None = None,
        message_id: str | None = None,
        allowance: Allowance | None = None,
        owner: str = ANONYMOUS,
        allowed: Callable[[str], bool] | None = None,
        on_finish: Sequence[Callable[[Generation], None]] = (),
        source: AsyncIterator[list[Event]] | None = None,
        deferred: bool = False,
        guard: Sequence[Rule] | None = None,
    ) -> Generation:
        """Start one answer. ``owner`` is the principal that may read, resume and stop
        it; ``format`` and the ids are how its edge speaks it (also on replay);
        ``allowed`` (a key's model allow-list) limits the fallbacks it may take;
        ``on_finish`` hooks run once when it ends (metering, settling limits).
        ``source`` gives the answer's events instead of the model (a cached answer, or
        an identical answer already in flight): no upstream call, no retries.
        ``deferred``: made and registered, but run only once someone calls its
        ``start`` (a shared answer must not call the model for a request that is then
        refused). ``guard``: the output rules for this caller (default: the model's
        rules for callers without a key); they see every answer, cached ones too."""
        provider = self.provider(request.model)  # ModelNotFound before anything starts
        validate = getattr(provider, VALIDATE, None)
        if validate is not None:
            validate(request)
        if self.active >= self.settings.max_running_generations:
            raise Unavailable(
                "The gateway is at capacity (too many answers running); retry shortly.",
                code="overloaded",
            )
        config = self._configs[request.model]
        fallbacks = [name for name in config.fallbacks if allowed is None or allowed(name)]
        if source is not None:
            fallbacks = []
        route = RetryState(
            [self._candidates[request.model]] + [self._candidates[name] for name in fallbacks],
            self.cooldowns,
        )
        info = StreamInfo(
            id=new_id(),
            model=request.model,
            created=int(time.time()),
            include_usage=request.include_usage,
            format=format,
            owner=owner,
            conversation_id=conversation_id,
            message_id=message_id,
        )
        opener = self._open_attempt if source is None else _given(source)
        rules = (
            list(guard) if guard is not None else self.guardrails.select(request.model, None).output
        )
        if rules:
            opener = self._guarded(opener, rules)
        generation = Generation(
            info,
            request,
            route,
            opener,
            policy=policy,
            timeouts=config.timeouts,
            on_done=self._finished,
            allowance=allowance,
            on_finish=on_finish,
            # A given source is no upstream call: no attempt to trace.
            on_attempt=self.on_attempt if source is None else None,
        )
        generation.sourced = source is not None
        self._generations[generation.id] = generation
        self._active += 1
        if self.observer is not None:
            self.observer.answer_started(generation)
        if self.shared is not None:
            shared = self.shared
            shared.begin(
                StreamMeta(
                    info.id,
                    info.model,
                    info.created,
                    info.include_usage,
                    info.format,
                    info.conversation_id or "",
                    info.message_id or "",
                    info.owner,
                )
            )
            gid = generation.id
            generation.log.mirror = lambda first, batch, end: shared.publish(gid, first, batch, end)
        if not deferred:
            generation.start()
        return generation

    async def open_stream(self, stream_id: str, *, reader: str) -> Stream:
        """The stream with this id, running here or (with Redis) on another instance. One
        that ``reader`` (a principal's owner string) may not reach is "not found", like
        one that never was."""
        generation = self._generations.get(stream_id)
        if generation is not None:
            if may_reach(reader, generation.owner):
                return LocalStream(generation)
        elif self.shared is not None:
            meta = await self.shared.meta(stream_id)
            if meta is not None and may_reach(reader, meta.owner):
                return SharedStream(self.shared, meta)
        raise NotFound(f"No stream with id {stream_id!r}.", param="stream_id")

    @property
    def retained(self) -> int:
        """Generations kept in memory, running or finished but still replayable."""
        return len(self._generations)

    @property
    def active(self) -> int:
        return self._active

    def _finished(self, generation: Generation) -> None:
        self._active -= 1
        if self.observer is not None:
            try:
                self.observer.answer_finished(generation)
            except Exception:
                logger.exception("recording the answer %s failed", generation.id)
        ttft = (
            generation.first_token_at - generation.started_at
            if generation.first_token_at is not None
            else None
        )
        finished = generation.finished_at
        duration = finished - generation.started_at if finished is not None else None
        # A stop or a client leaving is not an error; a failed answer is — unless the
        # upstream refused the client's own request (a 4xx: the client's fault, which a
        # client must not be able to turn into an alert).
        failed = generation.state is State.FAILED and not generation.refused_by_upstream
        self.recent.record(not failed, ttft, duration)
        # Finished generations stay replayable for a while, then are forgotten.
        asyncio.get_running_loop().call_later(self._retention, self._forget, generation.id)

    def _forget(self, generation_id: str) -> None:
        self._generations.pop(generation_id, None)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """Events of one answer, for embedding programs; closing the iterator cancels."""
        async for event in self.follow(self.start(request)):
            yield event

    async def follow(self, generation: Generation) -> AsyncIterator[Event]:
        """Every event of ``generation`` as a subscriber; leaving the loop unsubscribes
        (and, under ``cancel``, returns only once the upstream call is closed)."""
        async for batch in batches(LocalStream(generation)):
            for event in batch:
                yield event

    # -- lifecycle ----------------------------------------------------------

    async def check(self) -> dict[str, str]:
        """Each model's upstream reachability: "ok" or what is wrong."""
        names = list(self._providers)
        results = await asyncio.gather(
            *(self._providers[name].check() for name in names), return_exceptions=True
        )
        report = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, SluiceError):
                report[name] = result.message
            elif isinstance(result, BaseException):
                report[name] = f"check failed: {type(result).__name__}"
            else:
                report[name] = "ok"
        return report

    async def check_state(self) -> dict[str, str]:
        """The shared runtime state's reachability (Redis, when configured)."""
        if self.shared is None:
            return {}
        try:
            async with asyncio.timeout(2):
                await self.shared.ping()
        except (TimeoutError, OSError, RedisError) as exc:
            return {"redis": f"unreachable: {type(exc).__name__}"}
        return {"redis": "ok"}

    def running(self) -> list[Generation]:
        return [g for g in self._generations.values() if not g.done]

    def abort_owned(self, owner: str, error: SluiceError) -> int:
        """End every answer ``owner`` has running here with ``error`` (in-band once
        output started): its key was revoked. Returns how many."""
        owned = [g for g in self.running() if g.owner == owner]
        for generation in owned:
            generation.abort(error)
        return len(owned)

    async def drain(self, seconds: float) -> int:
        """Let running answers finish for up to ``seconds``, then end the rest with an
        in-band ``shutting_down`` error. Returns how many had to be ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self.running() and loop.time() < deadline:  # noqa: ASYNC110 (polling is fine here)
            await asyncio.sleep(0.05)
        remaining = self.running()
        for generation in remaining:
            generation.abort(
                ShuttingDown("The server is shutting down; retry the request.", retry_after=1)
            )
        for generation in remaining:
            await generation.wait()
        return len(remaining)

    def start_background(self) -> None:
        """Start what runs beside the requests (needs the running loop)."""
        if self.shared is not None:
            self.shared.listen_for_cancels(self._cancel_requested)
            self.shared.hold_lease()

    def _cancel_requested(self, request: str) -> None:
        if request.startswith(IF_IDLE):
            generation = self._generations.get(request.removeprefix(IF_IDLE))
            if generation is not None:
                generation.cancel_if_idle()
            return
        generation = self._generations.get(request)
        if generation is not None:
            generation.cancel()

    async def aclose(self) -> None:
        for generation in list(self._generations.values()):
            generation.cancel("shutdown")
        for provider in self._providers.values():
            await provider.aclose()
        await self.http.aclose()


def _given(source: AsyncIterator[list[Event]]) -> Opener:
    """An opener whose one attempt is ``source`` (which never fails as an upstream does,
    so there is no second attempt to open)."""
    return lambda candidate, request: source
