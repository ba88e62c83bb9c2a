"""Answers in flight other instances may follow, through Redis.

::

    {prefix}:cache:inflight:{key}      -> the root's stream id, while it runs (SET NX PX)
    {prefix}:cache:followers:{id}      -> how many readers on other instances follow it

A root is announced when it starts and withdrawn once it ended and was stored. An
instance that finds an announcement follows the root's shared event log — unless the
root's instance lost its lease (that answer would end interrupted). Followers elsewhere
are counted: when a root's own readers are all gone, its instance asks that count before
cancelling it (``Generation.kept``), and the last follower elsewhere to leave asks the
root's instance to stop it if nobody there reads it either.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import redis.asyncio as redis
from redis.exceptions import RedisError

from sluice.cache.sources import follow
from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.engine.stream import SharedStream
from sluice.errors import Unavailable
from sluice.events import Event

logger = logging.getLogger("sluice.cache")

_DELETE_IF = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedInFlight:
    def __init__(self, client: redis.Redis, engine: Engine, prefix: str) -> None:
        self._redis = client
        self._engine = engine
        self._announced = f"{prefix}:cache:inflight"
        self._followers = f"{prefix}:cache:followers"

    async def find(self, key: str) -> SharedStream | None:
        """The root answering ``key`` on a live instance, as a shared stream."""
        shared = self._engine.shared
        if shared is None:
            return None
        try:
            stream_id = await self._redis.get(f"{self._announced}:{key}")
        except (RedisError, OSError) as exc:
            logger.warning("looking for an identical answer in flight failed (%s)", _kind(exc))
            return None
        if stream_id is None:
            return None
        root_id = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
        try:
            meta = await shared.meta(root_id)
            if meta is None or meta.lost or not await shared.alive(meta):
                return None
        except Unavailable:
            return None
        # The scope check was the key itself: any principal of the scope may follow.
        return SharedStream(shared, meta)

    async def announce(self, key: str, root: Generation) -> None:
        longest = self._engine.config(root.model).timeouts.total
        try:
            await self._redis.set(
                f"{self._announced}:{key}", root.id, nx=True, px=int(longest * 1000)
            )
        except (RedisError, OSError) as exc:
            logger.warning("announcing an answer in flight failed (%s)", _kind(exc))

    async def withdraw(self, key: str, root_id: str) -> None:
        try:
            # Only our own announcement: another instance may lead the key by now.
            await self._redis.eval(_DELETE_IF, 1, f"{self._announced}:{key}", root_id)
        except (RedisError, OSError) as exc:
            logger.warning("withdrawing an answer in flight failed (%s)", _kind(exc))

    async def followed_elsewhere(self, root_id: str) -> bool:
        count = await self._redis.get(f"{self._followers}:{root_id}")
        return int(count or 0) > 0

    async def follow(self, root: SharedStream) -> AsyncIterator[list[Event]]:
        """Read a root on another instance, counted as its follower while reading."""
        name = f"{self._followers}:{root.info.id}"
        longest = self._engine.config(root.info.model).timeouts.total
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(name)
                pipe.expire(name, int(longest) + 60)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("counting a follower failed (%s)", _kind(exc))
        try:
            async for batch in follow(root):
                yield batch
        finally:
            await self._unfollow(name, root)

    async def _unfollow(self, name: str, root: SharedStream) -> None:
        shared = self._engine.shared
        try:
            if int(await self._redis.decr(name)) <= 0 and shared is not None:
                await shared.request_cancel(root.info.id, if_idle=True)
        except (RedisError, OSError, Unavailable) as exc:
            logger.warning("uncounting a follower failed (%s)", _kind(exc))


def _kind(exc: BaseException) -> str:
    return type(exc).__name__
