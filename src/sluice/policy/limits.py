"""Per-key rate limits: requests per minute, tokens per minute, concurrent streams.

Moving-window limits from the ``limits`` library, in memory or in Redis (then every
instance counts against one shared limit). Tokens are charged up front from an estimate
and topped up with the real count when the answer ends. Over a limit: a 429 naming the
limit, with ``Retry-After`` and the ``x-ratelimit-*`` headers OpenAI sends.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import redis.asyncio as redis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from sluice.errors import RateLimited
from sluice.store.keys import ApiKey


@dataclass
class Admission:
    """What a request was granted; ``headers`` go on its response."""

    key: ApiKey
    estimated_tokens: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    holds_slot: bool = False


class Concurrency:
    """Open streams per key: a counter in memory or Redis."""

    def __init__(self, client: redis.Redis | None) -> None:
        self._client = client
        self._local: dict[str, int] = {}

    async def acquire(self, key_id: str, limit: int) -> bool:
        if self._client is None:
            if self._local.get(key_id, 0) >= limit:
                return False
            self._local[key_id] = self._local.get(key_id, 0) + 1
            return True
        name = f"sluice:concurrent:{key_id}"
        count = int(await self._client.incr(name))
        await self._client.expire(name, 3600)  # a crashed instance's slots age out
        if count > limit:
            await self._client.decr(name)
            return False
        return True

    async def release(self, key_id: str) -> None:
        if self._client is None:
            self._local[key_id] = max(0, self._local.get(key_id, 0) - 1)
            return
        await self._client.decr(f"sluice:concurrent:{key_id}")


class RateLimits:
    def __init__(self, redis_url: str | None) -> None:
        storage: Storage = (
            RedisStorage("async+" + redis_url, implementation="redispy")
            if redis_url
            else MemoryStorage()
        )
        self._window = MovingWindowRateLimiter(storage)
        client = redis.Redis.from_url(redis_url) if redis_url else None
        self._client = client
        self.concurrency = Concurrency(client)

    async def admit(self, key: ApiKey, estimated_tokens: int) -> Admission:
        admission = Admission(key, estimated_tokens)
        if key.rpm:
            item = RateLimitItemPerMinute(key.rpm)
            allowed = await self._window.hit(item, key.id, "requests")
            stats = await self._window.get_window_stats(item, key.id, "requests")
            admission.headers += _headers("requests", key.rpm, stats.remaining, stats.reset_time)
            if not allowed:
                raise _limited("requests per minute", key.rpm, stats.reset_time, admission)
        if key.tpm:
            if estimated_tokens > key.tpm:
                raise RateLimited(
                    f"Request too large for tokens per minute: about {estimated_tokens} "
                    f"tokens asked (prompt + max_tokens), limit {key.tpm}.",
                    code="rate_limit_exceeded",
                    headers=admission.headers,
                )
            item = RateLimitItemPerMinute(key.tpm)
            cost = max(1, estimated_tokens)
            allowed = await self._window.hit(item, key.id, "tokens", cost=cost)
            stats = await self._window.get_window_stats(item, key.id, "tokens")
            admission.headers += _headers("tokens", key.tpm, stats.remaining, stats.reset_time)
            if not allowed:
                raise _limited("tokens per minute", key.tpm, stats.reset_time, admission)
        if key.max_concurrent:
            if not await self.concurrency.acquire(key.id, key.max_concurrent):
                raise RateLimited(
                    f"Rate limit reached for concurrent streams: at most {key.max_concurrent} "
                    "at once for this key. Retry when one finishes.",
                    code="concurrency_limit_exceeded",
                    retry_after=1,
                    headers=admission.headers,
                )
            admission.holds_slot = True
        return admission

    async def settle(self, admission: Admission, actual_tokens: int) -> None:
        """The answer ended: release its stream slot, charge tokens beyond the estimate."""
        key = admission.key
        if admission.holds_slot:
            await self.concurrency.release(key.id)
        extra = actual_tokens - admission.estimated_tokens
        if key.tpm and extra > 0:
            await self._window.hit(RateLimitItemPerMinute(key.tpm), key.id, "tokens", cost=extra)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _headers(kind: str, limit: int, remaining: int, reset: float) -> list[tuple[bytes, bytes]]:
    seconds = max(0.0, reset - time.time())
    return [
        (f"x-ratelimit-limit-{kind}".encode(), str(limit).encode()),
        (f"x-ratelimit-remaining-{kind}".encode(), str(max(0, remaining)).encode()),
        (f"x-ratelimit-reset-{kind}".encode(), f"{seconds:.3f}s".encode()),
    ]


def _limited(what: str, limit: int, reset: float, admission: Admission) -> RateLimited:
    wait = max(1, math.ceil(reset - time.time()))
    return RateLimited(
        f"Rate limit reached for {what}: limit {limit}. Retry after {wait} s.",
        code="rate_limit_exceeded",
        retry_after=wait,
        headers=admission.headers,
    )
