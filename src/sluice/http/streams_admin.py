"""``GET /v1/admin/streams``: the answers running in this process (master key only).

What ``sluice top`` draws: each running generation's ids, the model asked and the model
serving, whose it is (a key's *name*, looked up in the key store — never its secret),
age, output tokens so far, tokens per second since the first token, time to first token,
state, subscribers, disconnect policy and conversation. At most ``MAX_ROWS``, the oldest
first, plus the totals (running, retained).

One process's view: under ``--workers N`` each request reaches one worker, so ``pid``
says whose streams these are.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from typing import Any

from fastapi import APIRouter, Request

from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.errors import PermissionDenied
from sluice.events import ReasoningDelta, TextDelta, ToolCallDelta
from sluice.http.gate import PRINCIPAL
from sluice.owners import KEY_PREFIX
from sluice.policy.access import Principal
from sluice.store.keys import KeyStore

logger = logging.getLogger("sluice.http")

#: A bound on the answer whatever the load: the view shows a screenful anyway.
MAX_ROWS = 500
_TOKENS = (TextDelta, ReasoningDelta, ToolCallDelta)


class KeyNames:
    """Key id -> name, read from the store at most every ``ttl`` seconds (an operator
    polls once a second; the names rarely change), and sooner — at most every
    ``MISS_EVERY`` seconds — when a stream names a key created since the last read."""

    MISS_EVERY = 0.2

    def __init__(self, keys: KeyStore, ttl: float = 5.0) -> None:
        self._keys = keys
        self._ttl = ttl
        self._names: dict[str, str] = {}
        self._read_at = float("-inf")

    async def lookup(self, ids: set[str]) -> dict[str, str]:
        now = time.monotonic()
        age = now - self._read_at
        if age > self._ttl or (age > self.MISS_EVERY and not ids <= self._names.keys()):
            self._read_at = now  # a failed read is not retried before the next turn
            try:
                self._names = {key.id: key.name for key in await self._keys.all()}
            except Exception as exc:  # the store is down: ids without names, not a 500
                logger.warning("reading key names failed (%s)", type(exc).__name__)
        return self._names


class TokenCounts:
    """Output tokens per running generation, counted incrementally: a log only grows, so
    each poll looks at the events that arrived since the last one instead of rescanning
    long answers every second."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, int]] = {}

    def count(self, generations: list[Generation]) -> dict[str, int]:
        seen = self._seen
        counts: dict[str, int] = {}
        for generation in generations:
            events = generation.log.events
            start, tokens = seen.get(generation.id, (0, 0))
            end = len(events)
            tokens += sum(1 for i in range(start, end) if isinstance(events[i], _TOKENS))
            counts[generation.id] = tokens
        # Only the rows just shown are kept: the table stays as bounded as the answer.
        self._seen = {g.id: (len(g.log.events), counts[g.id]) for g in generations}
        return counts


def owner_parts(owner: str) -> tuple[str, str | None]:
    """``key:<id>`` -> ("key", id); "admin", "local", "anonymous" -> (that, None)."""
    if owner.startswith(KEY_PREFIX):
        return "key", owner[len(KEY_PREFIX) :]
    return owner, None


def stream_row(
    generation: Generation, tokens: int, names: dict[str, str], now: float
) -> dict[str, Any]:
    info = generation.info
    kind, key_id = owner_parts(info.owner)
    first = generation.first_token_at
    since_first = now - first if first is not None else 0.0
    return {
        "id": generation.id,
        "model": info.model,
        "served_by": generation.served_by,
        "owner": kind,
        "key_id": key_id,
        "key_name": names.get(key_id) if key_id is not None else None,
        "age_seconds": round(now - generation.started_at, 3),
        "output_tokens": tokens,
        "tokens_per_second": round(tokens / since_first, 2) if since_first > 0 else None,
        "ttft_seconds": round(first - generation.started_at, 3) if first is not None else None,
        "state": generation.state.value,
        "subscribers": generation.subscribers,
        "policy": generation.policy,
        "conversation_id": info.conversation_id,
    }


def build_router(engine: Engine, keys: KeyStore) -> APIRouter:
    router = APIRouter(tags=["streams"])
    names = KeyNames(keys)
    counts = TokenCounts()

    @router.get("/v1/admin/streams")
    async def running_streams(request: Request) -> dict[str, Any]:
        principal: Principal = request.scope[PRINCIPAL]
        if not principal.master:
            raise PermissionDenied("Watching the running streams needs the master key.")
        running = engine.running()
        shown = heapq.nsmallest(MAX_ROWS, running, key=lambda g: g.started_at)
        key_ids = {key_id for g in shown if (key_id := owner_parts(g.owner)[1]) is not None}
        known = await names.lookup(key_ids) if key_ids else {}
        tokens = counts.count(shown)
        now = time.monotonic()
        return {
            "object": "list",
            "data": [stream_row(g, tokens[g.id], known, now) for g in shown],
            "running": len(running),
            "retained": engine.retained,
            "pid": os.getpid(),
        }

    return router
