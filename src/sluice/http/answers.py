"""Starting an answer for an API request, and writing it: what every API edge (chat
completions, Responses, Messages) shares.

``ApiEdge`` holds what each of them is built with and writes an answer two ways: as an
event stream through the relay (the status decided before the first byte), or whole
once it ends. ``start_answer`` is the one admission path:

Per request, in this order: ask the response cache where the answer comes from (a cached
copy, an identical answer in flight, or the model), admit it (key, limits, budget; a
cached answer spends nothing), start the generation with the hooks that settle the quota
and fill the cache, and bind it to the request's log record. Whatever fails on the way
gives back what was taken before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sluice.cache.responses import ResponseCache
from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.engine.stream import Stream
from sluice.http.asgi import Receive, Scope
from sluice.http.cache_headers import cache_control, paced_replay
from sluice.http.gate import principal_of
from sluice.http.relay import Encoder, disconnected, race, relay
from sluice.http.transports import SSEResponse
from sluice.policy.quota import Quota
from sluice.settings import DisconnectPolicy
from sluice.telemetry.record import current as current_record
from sluice.wire.openai_request import ChatRequest


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_body_bytes: int
    #: Seconds of silence before a keep-alive is written.
    keepalive_seconds: float
    #: Seconds a send may stay stuck before the client is cut off (None: never).
    send_timeout_seconds: float | None = None


class ApiEdge:
    """What an API endpoint is built with, and the two ways it writes an answer."""

    def __init__(
        self, engine: Engine, quota: Quota, cache: ResponseCache, limits: EdgeLimits
    ) -> None:
        self._engine = engine
        self._quota = quota
        self._cache = cache
        self._limit = limits.max_body_bytes
        self._keepalive = limits.keepalive_seconds
        self._send_timeout = limits.send_timeout_seconds

    async def _start(
        self,
        scope: Scope,
        request: ChatRequest,
        *,
        policy: DisconnectPolicy,
        format: str,
        on_finish: Sequence[Callable[[Generation], None]] = (),
    ) -> Started:
        return await start_answer(
            scope,
            self._engine,
            self._quota,
            self._cache,
            request,
            policy=policy,
            format=format,
            on_finish=on_finish,
        )

    async def _stream(
        self,
        stream: Stream,
        encoder: Encoder[Any],
        response: SSEResponse,
        receive: Receive,
    ) -> None:
        """Write ``stream`` as an event stream: an error before the first event is an
        HTTP error (``SSEResponse.decide``), later ones go in-band."""

        async def decide() -> bool:
            return await response.decide(stream, self._keepalive)

        done = await relay(
            stream,
            encoder,
            response,
            keepalive=self._keepalive,
            send_timeout=self._send_timeout,
            receive=receive,
            decide=decide,
        )
        if done:
            await response.end()

    @staticmethod
    async def _ended(stream: Stream, receive: Receive) -> bool:
        """Wait for the whole answer; False if the client left first."""
        return await race([stream.wait_end(), disconnected(receive)]) == 0


@dataclass(frozen=True, slots=True)
class Started:
    generation: Generation
    #: Response headers the answer brings (rate limits, cache outcome).
    headers: list[tuple[bytes, bytes]]
    #: The request as admitted: input guardrails' masks applied.
    request: ChatRequest


async def start_answer(
    scope: Scope,
    engine: Engine,
    quota: Quota,
    cache: ResponseCache,
    request: ChatRequest,
    *,
    policy: DisconnectPolicy,
    format: str,
    on_finish: Sequence[Callable[[Generation], None]] = (),
) -> Started:
    """Admit and start ``request`` for the scope's principal; raises the SluiceError
    that refuses it (unknown model, a guardrail's block, limits, budget, capacity)."""
    engine.provider(request.model)  # 404 before any quota is spent
    record = current_record()
    if record is not None:
        record.model = request.model  # a configured model: safe to log and label
    principal = principal_of(scope)
    rules = engine.guardrails.select(request.model, principal.key_names)
    # Masked (or refused) before the cache key is made and anything is sent upstream.
    request = await engine.guardrails.check_input(request, rules)
    plan = cache.plan(request, principal.owner, cache_control(scope))
    allowed = principal.key.allows if principal.key else None
    decision = await cache.decide(request, plan, paced=paced_replay(scope), allowed=allowed)
    try:
        ticket = await quota.admit(
            principal,
            request.model,
            request.messages,
            request.max_tokens,
            spends=not decision.costs_nothing,
        )
        try:
            generation = engine.start(
                request,
                policy=policy,
                format=format,
                allowance=ticket.allowance,
                owner=principal.owner,
                allowed=allowed,
                on_finish=[quota.finisher(ticket), *cache.finishers(decision), *on_finish],
                source=decision.source,
                guard=rules.output,
            )
        except BaseException:
            quota.release(ticket)
            raise
    except BaseException:
        decision.release()
        raise
    cache.started(generation, decision)
    quota.meter(generation, principal, ticket)
    if record is not None:
        record.generation = generation
        record.cache, record.coalesced = decision.outcome, decision.coalesced
    return Started(generation, [*ticket.headers, *decision.headers], request)
