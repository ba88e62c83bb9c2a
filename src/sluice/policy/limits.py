"""Per-key rate limits: requests per minute, tokens per minute, concurrent streams.

Moving-window limits from the ``limits`` library, in memory or in Redis (then every
instance counts against one shared limit). Tokens are charged up front from an estimate
and topped up with the real count when the answer ends. Over a limit: a 429 naming the
limit, with ``Retry-After`` and the ``x-ratelimit-*`` headers OpenAI sends.

Concurrent streams are slots: every key has a cap (its own ``max_concurrent``, else the
deployment's default). In Redis a key's slots are a sorted set of slot ids scored by
when each lease runs out; the owner renews the lease while its answer runs, so slots
of a crashed instance expire by themselves instead of locking the key out.

Shared state that cannot be reached fails closed: ``fail_closed`` turns the storage
errors into a 503 (``Unavailable``) with ``Retry-After``.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as redis
from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.exceptions import RedisError

from sluice.errors import RateLimited, Unavailable
from sluice.store.keys import ApiKey

#: What an unreachable Redis raises, through the limits library or directly.
SHARED_STATE_ERRORS = (StorageError, RedisError, ConnectionError, TimeoutError, OSError)


@asynccontextmanager
async def fail_closed() -> AsyncIterator[None]:
    try:
        yield
    except SHARED_STATE_ERRORS as exc:
        raise Unavailable(
            "Rate limits and budgets cannot be checked right now (shared state is "
            "unreachable); retry shortly.",
            retry_after=2,
        ) from exc


@dataclass
class Admission:
    """What a request was granted; ``headers`` go on its response."""

    key: ApiKey
    estimated_tokens: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    #: The stream slot it holds, until released.
    slot: str | None = None


class Slots(Protocol):
    async def acquire(self, key_id: str, limit: int) -> str | None:
        """A new slot's id, or None if ``limit`` are taken."""
        ...

    async def release(self, key_id: str, slot: str) -> None: ...

    async def renew(self, held: Iterable[tuple[str, str]]) -> None:
        """Extend the leases of (key id, slot) pairs still running."""
        ...

    async def count(self, key_id: str) -> int: ...


class MemorySlots:
    def __init__(self) -> None:
        self._held: dict[str, set[str]] = {}

    async def acquire(self, key_id: str, limit: int) -> str | None:
        held = self._held.setdefault(key_id, set())
        if len(held) >= limit:
            return None
        slot = secrets.token_hex(8)
        held.add(slot)
        return slot

    async def release(self, key_id: str, slot: str) -> None:
        held = self._held.get(key_id)
        if held is not None:
            held.discard(slot)
            if not held:
                del self._held[key_id]

    async def renew(self, held: Iterable[tuple[str, str]]) -> None:
        return None  # slots in memory die with the process; nothing to expire

    async def count(self, key_id: str) -> int:
        return len(self._held.get(key_id, ()))


# The server's clock, so instances with skewed clocks agree on which leases ran out.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# KEYS[1] the key's slots. ARGV: limit, lease (ms), slot id. 1 if taken.
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

# KEYS[1] the key's slots. ARGV: lease (ms), slot ids. Only slots still held are renewed.
_RENEW = (
    _NOW
    + """
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"""
)

_COUNT = _NOW + "return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')\n"


class RedisSlots:
    def __init__(self, client: redis.Redis, prefix: str, lease_seconds: float) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._count = client.register_script(_COUNT)

    def _name(self, key_id: str) -> str:
        return f"{self._prefix}:slots:{key_id}"

    async def acquire(self, key_id: str, limit: int) -> str | None:
        slot = secrets.token_hex(8)
        taken = await self._acquire(keys=[self._name(key_id)], args=[limit, self._lease_ms, slot])
        return slot if taken else None

    async def release(self, key_id: str, slot: str) -> None:
        await self._client.zrem(self._name(key_id), slot)

    async def renew(self, held: Iterable[tuple[str, str]]) -> None:
        by_key: dict[str, list[str]] = {}
        for key_id, slot in held:
            by_key.setdefault(key_id, []).append(slot)
        if not by_key:
            return
        pipe = self._client.pipeline(transaction=False)
        for key_id, slots in by_key.items():
            await self._renew(keys=[self._name(key_id)], args=[self._lease_ms, *slots], client=pipe)
        await pipe.execute()

    async def count(self, key_id: str) -> int:
        return int(await self._count(keys=[self._name(key_id)]))


class RateLimits:
    """``client``: the deployment's Redis (shared with the budget ledger), or None for
    limits in memory. Keys without ``max_concurrent`` get ``default_concurrency``."""

    #: Seconds a Redis slot lives without renewal (its owner renews it every third).
    LEASE_SECONDS = 30.0

    def __init__(
        self,
        client: redis.Redis | None = None,
        *,
        prefix: str = "sluice",
        default_concurrency: int = 32,
    ) -> None:
        self._default_concurrency = default_concurrency
        storage: Storage
        self.slots: Slots
        if client is None:
            storage = MemoryStorage()
            self.slots = MemorySlots()
        else:
            # The library builds its own client object, but on our connection pool.
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{prefix}:limits",
                wrap_exceptions=True,
                connection_pool=client.connection_pool,  # type: ignore[arg-type]
            )
            self.slots = RedisSlots(client, prefix, self.LEASE_SECONDS)
        self._window = MovingWindowRateLimiter(storage)

    async def request(self, key: ApiKey) -> list[tuple[bytes, bytes]]:
        """Count a request that opens no stream and spends no tokens (a moderation
        check) against the key's requests per minute; its rate-limit headers."""
        admission = Admission(key, 0)
        await self._count(key, admission)
        return admission.headers

    async def _count(self, key: ApiKey, admission: Admission) -> None:
        if key.rpm:
            item = RateLimitItemPerMinute(key.rpm)
            allowed = await self._window.hit(item, key.id, "requests")
            stats = await self._window.get_window_stats(item, key.id, "requests")
            admission.headers += _headers("requests", key.rpm, stats.remaining, stats.reset_time)
            if not allowed:
                raise _limited("requests per minute", key.rpm, stats.reset_time, admission)

    async def admit(self, key: ApiKey, estimated_tokens: int) -> Admission:
        """Count the request against the key's limits and take a stream slot. Redis
        errors propagate (``fail_closed`` turns them into a 503)."""
        admission = Admission(key, estimated_tokens)
        await self._count(key, admission)
        if key.tpm and estimated_tokens:  # nothing to charge for an answer that spends none
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
        limit = key.max_concurrent or self._default_concurrency
        admission.slot = await self.slots.acquire(key.id, limit)
        if admission.slot is None:
            raise RateLimited(
                f"Rate limit reached for concurrent streams: at most {limit} at once for "
                "this key. Retry when one finishes.",
                code="concurrency_limit_exceeded",
                retry_after=1,
                headers=admission.headers,
            )
        return admission

    async def release(self, admission: Admission) -> None:
        """Give the stream slot back (once; later calls do nothing)."""
        slot, admission.slot = admission.slot, None
        if slot is not None:
            await self.slots.release(admission.key.id, slot)

    async def renew(self, admissions: Iterable[Admission]) -> None:
        await self.slots.renew((a.key.id, a.slot) for a in admissions if a.slot is not None)

    async def charge(self, admission: Admission, actual_tokens: int) -> None:
        """The answer ended: charge tokens beyond the estimate to the tokens-per-minute
        window."""
        key = admission.key
        extra = actual_tokens - admission.estimated_tokens
        if key.tpm and extra > 0:
            await self._window.hit(RateLimitItemPerMinute(key.tpm), key.id, "tokens", cost=extra)

    async def aclose(self) -> None:
        """Nothing to close: the Redis client belongs to whoever passed it in."""


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
