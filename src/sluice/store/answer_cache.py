"""Where cached answers live: one small contract, three backends.

::

    AnswerStore ── get(key) -> bytes | None        a live entry, else None
                ── put(key, model, value, ttl)     replaces; expires after ttl seconds
                ── clear(model=None) -> int        entries removed
                ── stats() -> StoreStats           entries and bytes held

- ``MemoryAnswers``: this process only, least recently used out first, bounded by bytes.
- ``SQLAnswers``: the configured database (SQLite or PostgreSQL); expired rows are swept
  on writes, at most once a minute.
- ``RedisAnswers``: shared by every instance; Redis expires entries itself. Each model's
  keys are listed in a set so ``clear --model`` needs no scan of the whole keyspace.

Values are opaque bytes (``sluice.cache.entry``); keys are request hashes. A backend
that fails raises; the cache above it decides what a failure means (a miss).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as redis
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.schema import response_cache

#: Seconds between sweeps of expired rows in the database.
SWEEP_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class StoreStats:
    entries: int
    bytes: int


class AnswerStore(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, model: str, value: bytes, ttl: float) -> None: ...

    async def clear(self, model: str | None = None) -> int: ...

    async def stats(self) -> StoreStats: ...


class MemoryAnswers:
    """Entries in this process, least recently used evicted past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._entries: OrderedDict[str, tuple[float, str, bytes]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= time.time():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[2]

    async def put(self, key: str, model: str, value: bytes, ttl: float) -> None:
        if len(value) > self._max // 4:
            return  # one answer may not push out most of the others
        self._drop(key)
        self._entries[key] = (time.time() + ttl, model, value)
        self._bytes += len(value)
        while self._bytes > self._max:
            self._drop(next(iter(self._entries)))

    async def clear(self, model: str | None = None) -> int:
        doomed = [k for k, (_, m, _) in self._entries.items() if model is None or m == model]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def stats(self) -> StoreStats:
        return StoreStats(len(self._entries), self._bytes)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[2])


class SQLAnswers:
    """Entries in the ``response_cache`` table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._swept = 0.0

    async def get(self, key: str) -> bytes | None:
        query = select(response_cache.c.value).where(
            response_cache.c.key == key, response_cache.c.expires_at > time.time()
        )
        async with self._engine.connect() as connection:
            value = (await connection.execute(query)).scalar_one_or_none()
        return bytes(value) if value is not None else None

    async def put(self, key: str, model: str, value: bytes, ttl: float) -> None:
        now = time.time()
        row = {
            "key": key,
            "model": model,
            "value": value,
            "size": len(value),
            "expires_at": now + ttl,
            "stored_at": now,
        }
        upsert = _upsert(self._engine.dialect.name)
        async with self._engine.begin() as connection:
            # One statement, so two instances storing the same answer at once both
            # succeed and leave one row (a delete-then-insert races on PostgreSQL).
            statement = upsert(response_cache).values(**row)
            await connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[response_cache.c.key],
                    set_={name: statement.excluded[name] for name in row if name != "key"},
                )
            )
            if now - self._swept >= SWEEP_SECONDS:
                self._swept = now
                await connection.execute(
                    delete(response_cache).where(response_cache.c.expires_at <= now)
                )

    async def clear(self, model: str | None = None) -> int:
        statement = delete(response_cache)
        if model is not None:
            statement = statement.where(response_cache.c.model == model)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return int(result.rowcount or 0)

    async def stats(self) -> StoreStats:
        query = select(func.count(), func.coalesce(func.sum(response_cache.c.size), 0)).where(
            response_cache.c.expires_at > time.time()
        )
        async with self._engine.connect() as connection:
            entries, size = (await connection.execute(query)).one()
        return StoreStats(int(entries), int(size))


def _upsert(dialect: str) -> Any:
    return postgresql_insert if dialect == "postgresql" else sqlite_insert


class RedisAnswers:
    """Entries in Redis under ``{prefix}:cache:``, expired by Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}:cache"

    def _key(self, key: str) -> str:
        return f"{self._prefix}:answer:{key}"

    def _models(self) -> str:
        return f"{self._prefix}:models"

    def _index(self, model: str) -> str:
        return f"{self._prefix}:model:{model}"

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(self._key(key))
        return _bytes(value) if value is not None else None

    async def put(self, key: str, model: str, value: bytes, ttl: float) -> None:
        milliseconds = max(1, int(ttl * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(key), value, px=milliseconds)
            pipe.sadd(self._index(model), key)
            # The index lives as long as its newest entry (stale members are pruned by
            # ``stats``), so an idle model's index does not outlive its answers.
            pipe.pexpire(self._index(model), milliseconds, nx=True)
            pipe.pexpire(self._index(model), milliseconds, gt=True)
            pipe.sadd(self._models(), model)
            await pipe.execute()

    async def clear(self, model: str | None = None) -> int:
        if model is None:
            models = [_text(m) for m in await self._redis.smembers(self._models())]
        else:
            models = [model]
        removed = 0
        for name in models:
            index = self._index(name)
            keys = [_text(k) for k in await self._redis.smembers(index)]
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                removed += int(await self._redis.delete(*(self._key(k) for k in chunk)))
            await self._redis.delete(index)
            await self._redis.srem(self._models(), name)
        return removed

    async def stats(self) -> StoreStats:
        """Live entries and their bytes; index members whose entry expired are pruned
        on the way (the index is the only list of what exists)."""
        entries = size = 0
        for raw in await self._redis.smembers(self._models()):
            index = self._index(_text(raw))
            keys = [_text(k) for k in await self._redis.smembers(index)]
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in chunk:
                        pipe.strlen(self._key(key))
                    lengths = await pipe.execute()
                gone = [k for k, length in zip(chunk, lengths, strict=True) if not length]
                if gone:
                    await self._redis.srem(index, *gone)
                live = [length for length in lengths if length]
                entries += len(live)
                size += sum(live)
        return StoreStats(entries, size)


def _text(value: bytes | str) -> str:
    # The shared client returns bytes (no decode_responses); tests may pass either.
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
