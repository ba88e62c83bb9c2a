"""The response cache and request coalescing, around the engine's one start.

Every edge asks the same question before it starts an answer (``decide``), and tells
the cache once the answer started (``started``)::

    plan (key, eligibility) ──> a cached whole answer?   yes: replay it           "hit"
                            └─> the same answer running? yes: follow it       coalesced
                            └─> shareable: start the root answer (no client's own) and
                                follow it as its first reader           "miss"/"refresh"
                            └─> otherwise: the edge's own answer, stored if whole

Whatever the case, the edge's answer is an ordinary Generation — a hit, a follower and
the first reader of a root alike have their own id, owner and disconnect policy — so
the relay, resume, stop, the chat saver and metering treat them like any other. The
root is what calls the model and what is stored; it is cancelled (under ``cancel``) only
when nobody reads it any more (see ``sources.Lead``), so one client's stop, budget or
disconnect ends only its own answer.

With Redis, a root announces itself there, so a request on another instance follows its
shared event log (counted, so the root's instance keeps it running). A backend that
fails is a miss (logged, counted), never an error for the client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import redis.asyncio as redis

from sluice.cache.entry import CachedAnswer, decode, encode, storable
from sluice.cache.inflight import SharedInFlight
from sluice.cache.key import CacheControl, Outcome, Plan, plan
from sluice.cache.sources import Lead, follow, replay
from sluice.engine.engine import Engine
from sluice.engine.generation import Generation, State
from sluice.engine.stream import LocalStream, SharedStream, Stream
from sluice.events import Event
from sluice.owners import ADMIN
from sluice.settings import Settings
from sluice.store.answer_cache import AnswerStore, StoreStats
from sluice.telemetry.metrics import Metrics
from sluice.wire.openai_request import ChatRequest

logger = logging.getLogger("sluice.cache")

#: ``X-Sluice-Cache-Replay``: a hit arrives at once, or at the pace it was generated.
REPLAY_MODES = ("immediate", "paced")
#: Scope of requests that share answers across keys (``cache_scope = "global"``).
EVERYONE = "*"


@dataclass(slots=True)
class Decision:
    """What an edge starts: events from ``source`` (a hit, a follower, or the first
    reader of a root), or — without one — the model itself."""

    plan: Plan
    outcome: Outcome
    source: AsyncIterator[list[Event]] | None = None
    #: The answer follows an identical one already in flight.
    coalesced: bool = False
    #: The root this request caused, held until its answer reads it.
    lead: Lead | None = None

    @property
    def costs_nothing(self) -> bool:
        """No upstream tokens are spent for it: budgets and token limits skip it."""
        return self.source is not None and self.lead is None

    def release(self) -> None:
        """The edge failed before its answer started (refused, at capacity): let go of
        the root it caused, if any."""
        if self.lead is not None:
            self.lead.release()

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"x-sluice-cache", self.outcome.encode())]
        if self.coalesced:
            headers.append((b"x-sluice-coalesced", b"true"))
        return headers


@dataclass(slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    refreshes: int = 0
    bypasses: int = 0
    coalesced: int = 0
    stored: int = 0
    stored_bytes: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class ResponseCache:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        store: AnswerStore | None,
        *,
        client: redis.Redis | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._engine = engine
        self._store = store
        #: Roots other instances may follow (with Redis).
        self._shared = (
            SharedInFlight(client, engine, settings.redis_prefix) if client is not None else None
        )
        #: Answers in flight others may follow, by cache key.
        self._leaders: dict[str, Generation] = {}
        self.counters = Counters()
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self._store is not None

    # -- before the start -------------------------------------------------------

    def plan(self, request: ChatRequest, owner: str, control: CacheControl) -> Plan:
        settings = self._settings
        config = self._engine.config(request.model)
        return plan(
            request.body,
            EVERYONE if settings.cache_scope == "global" else owner,
            control,
            model_cache=config.cache,
            ttl=config.cache_ttl_seconds or settings.cache_ttl_seconds,
            max_ttl=settings.cache_max_ttl_seconds,
            cache_on=self.enabled,
            coalesce=settings.coalesce,
        )

    async def decide(
        self,
        request: ChatRequest,
        plan: Plan,
        *,
        paced: bool = False,
        allowed: Callable[[str], bool] | None = None,
    ) -> Decision:
        """Where the answer to ``request`` comes from. Never raises for the cache's own
        failures (those are misses); starting a root may raise what ``Engine.start``
        raises. The edge must call ``Decision.release`` if it fails before its answer
        starts. ``allowed`` is the requester's model allow-list (a root's fallbacks)."""
        if plan.key is None:
            return Decision(plan, "bypass")
        if plan.read and self._store is not None:
            answer = await self._lookup(plan.key)
            if answer is not None:
                return Decision(plan, "hit", replay(answer, paced=paced))
        if not plan.share:
            return Decision(plan, plan.outcome)
        outcome: Outcome = "bypass" if not plan.write else plan.outcome
        leader = await self._leader(plan.key)
        if leader is not None:
            source = (
                self._shared.follow(leader)
                if isinstance(leader, SharedStream) and self._shared is not None
                else follow(leader)
            )
            return Decision(plan, outcome, source, coalesced=True)
        lead = self._start_root(request, plan, allowed)
        return Decision(plan, outcome, lead.events(), lead=lead)

    def _start_root(
        self, request: ChatRequest, plan: Plan, allowed: Callable[[str], bool] | None
    ) -> Lead:
        assert plan.key is not None
        key = plan.key
        if self._settings.cache_scope == "global":
            # Shared across keys: no fallback one of them may not be allowed to use.
            allowed = _no_fallback
        root = self._engine.start(
            request,
            policy="cancel",
            owner=ADMIN,  # nobody's: no client reaches it by id
            allowed=allowed,
            on_finish=[lambda generation: self._finished(generation, plan)],
            # Run by the first admitted reader: a refused request calls no model.
            deferred=True,
        )
        lead = Lead(root)
        if plan.write:
            root.timeline = []
        self._leaders[key] = root
        shared = self._shared
        if shared is not None:
            self._spawn(shared.announce(key, root))
            root_id = root.id
            root.kept = lambda: shared.followed_elsewhere(root_id)
        return lead

    def finishers(self, decision: Decision) -> list[Callable[[Generation], None]]:
        """The ``on_finish`` hooks of the edge's answer: let go of the root it caused,
        or — an unshared answer to store — store it whole."""
        lead = decision.lead
        if lead is not None:
            return [lambda _: lead.release()]
        plan = decision.plan
        if decision.source is not None or plan.key is None or not plan.write:
            return []
        return [lambda generation: self._finished(generation, plan)]

    def started(self, generation: Generation, decision: Decision) -> None:
        """The edge's answer started (the request was admitted): count the outcome;
        an unshared answer to store records its timing for paced replays."""
        counters = self.counters
        outcome = decision.outcome
        if decision.coalesced:
            counters.coalesced += 1
        elif outcome == "hit":
            counters.hits += 1
        elif outcome == "miss":
            counters.misses += 1
        elif outcome == "refresh":
            counters.refreshes += 1
        else:
            counters.bypasses += 1
        metrics = self._metrics
        if metrics is not None:
            metrics.cache.labels(outcome).inc()
            if decision.coalesced:
                metrics.coalesced.inc()
        plan = decision.plan
        if decision.source is None and plan.key is not None and plan.write:
            generation.timeline = []

    # -- lookups ------------------------------------------------------------------

    async def _lookup(self, key: str) -> CachedAnswer | None:
        assert self._store is not None
        try:
            data = await self._store.get(key)
        except Exception as exc:
            self.counters.errors += 1
            logger.warning("the response cache failed a lookup (%s); a miss", _kind(exc))
            return None
        return decode(data) if data is not None else None

    async def _leader(self, key: str) -> Stream | None:
        local = self._leaders.get(key)
        if local is not None:
            return LocalStream(local)
        if self._shared is None:
            return None
        return await self._shared.find(key)

    # -- after the end ------------------------------------------------------------

    def _finished(self, generation: Generation, plan: Plan) -> None:
        answer = self._whole(generation) if plan.write and self._store is not None else None
        self._spawn(self._settle(plan, generation, answer))

    def _whole(self, generation: Generation) -> CachedAnswer | None:
        events = generation.log.events
        whole = (
            generation.state is State.COMPLETED
            and generation.served_by == generation.model
            and storable(events, generation.request.n)
        )
        if not whole or generation.timeline is None:
            return None
        started = generation.started_at
        batches_: list[tuple[float, tuple[Event, ...]]] = []
        seen = 0
        for count, at in generation.timeline:
            batches_.append(((at - started) * 1000, tuple(events[seen:count])))
            seen = count
        if seen < len(events):
            # Events appended after the last batch (none today; kept, not dropped).
            batches_.append((batches_[-1][0] if batches_ else 0.0, tuple(events[seen:])))
        return CachedAnswer(generation.model, tuple(batches_), time.time())

    async def _settle(
        self, plan: Plan, generation: Generation, answer: CachedAnswer | None
    ) -> None:
        assert plan.key is not None
        try:
            if answer is not None and self._store is not None:
                data = encode(answer)
                try:
                    await self._store.put(plan.key, answer.model, data, plan.ttl)
                    self.counters.stored += 1
                    self.counters.stored_bytes += len(data)
                    if self._metrics is not None:
                        self._metrics.cache_stored.inc(len(data))
                except Exception as exc:
                    self.counters.errors += 1
                    logger.warning("storing an answer in the cache failed (%s)", _kind(exc))
        finally:
            # Announced until stored: an identical request in between follows the
            # finished leader (a replay of its log) instead of asking the model again.
            if self._leaders.get(plan.key) is generation:
                del self._leaders[plan.key]
            if self._shared is not None and plan.share:
                await self._shared.withdraw(plan.key, generation.id)

    # -- operations -----------------------------------------------------------------

    async def stats(self) -> dict[str, Any]:
        held: StoreStats | None = None
        if self._store is not None:
            held = await self._store.stats()
        return {
            "backend": self._settings.cache,
            "scope": self._settings.cache_scope,
            "coalesce": self._settings.coalesce,
            "entries": held.entries if held else 0,
            "bytes": held.bytes if held else 0,
            "in_flight": len(self._leaders),
            **self.counters.as_dict(),
        }

    async def clear(self, model: str | None = None) -> int:
        if self._store is None:
            return 0
        return await self._store.clear(model)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Wait for answers being stored (shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _no_fallback(model: str) -> bool:
    return False


def _kind(exc: BaseException) -> str:
    return type(exc).__name__
