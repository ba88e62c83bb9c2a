"""Event logs shared between gateway instances, in Redis Streams.

Each generation mirrors its EventLog to ``sluice:stream:{id}`` (one stream entry per
flushed batch, with the sequence number of its first event) next to a small metadata
hash, so a client can resume on any instance. Writes never block the stream: batches
are queued and a background flusher sends them in pipelines every few milliseconds,
so a resuming client on another instance lags the owner by at most that much. Cancel
requests travel on the ``sluice:cancel`` pub/sub channel to whichever instance owns the
generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as redis

from sluice.events import Event
from sluice.wire.events_json import event_from_dict, event_to_dict

logger = logging.getLogger("sluice.store")

PREFIX = "sluice:stream:"
CANCEL_CHANNEL = "sluice:cancel"
_FLUSH_EVERY = 0.01


@dataclass(frozen=True, slots=True)
class StreamMeta:
    id: str
    model: str
    created: int
    include_usage: bool
    #: "openai" or "chat": the protocol a replay speaks.
    format: str = "openai"
    conversation_id: str = ""
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored batch: events numbered from ``first``; ``end`` closes the stream."""

    first: int
    events: list[Event]
    end: bool


class RedisEventLogs:
    def __init__(self, url: str, *, retention_seconds: float, running_ttl: float = 7200) -> None:
        self._client: redis.Redis = redis.Redis.from_url(url)
        self._retention = max(1, int(retention_seconds))
        self._running_ttl = int(running_ttl)
        self._pending: list[tuple[str, int, list[Event], bool]] = []
        self._metas: list[StreamMeta] = []
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None

    # -- the owner's side ---------------------------------------------------

    def begin(self, meta: StreamMeta) -> None:
        """Queue the metadata of a new stream (written before its first batch)."""
        self._metas.append(meta)
        self._kick()

    def publish(self, stream_id: str, first: int, events: list[Event], end: bool = False) -> None:
        """Queue a batch for the shared log; returns at once."""
        self._pending.append((stream_id, first, list(events), end))
        self._kick()

    def _kick(self) -> None:
        self._wake.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_forever())

    async def _flush_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(_FLUSH_EVERY)  # let a few batches gather
            try:
                await self.flush()
            except redis.RedisError:
                logger.warning("shared event log: Redis write failed; retrying", exc_info=True)
                self._wake.set()
                await asyncio.sleep(0.5)

    async def flush(self) -> None:
        # One flush at a time keeps each stream's entries in order.
        async with self._flushing:
            pending, self._pending = self._pending, []
            metas, self._metas = self._metas, []
            if not pending and not metas:
                return
            try:
                await self._write(pending, metas)
            except redis.RedisError:
                # Put them back in front: nothing is lost, order is kept.
                self._pending[:0] = pending
                self._metas[:0] = metas
                raise

    async def _write(
        self, pending: list[tuple[str, int, list[Event], bool]], metas: list[StreamMeta]
    ) -> None:
        async with self._client.pipeline(transaction=False) as pipe:
            for meta in metas:
                key = PREFIX + meta.id + ":meta"
                mapping = {
                    "model": meta.model,
                    "created": meta.created,
                    "include_usage": int(meta.include_usage),
                    "format": meta.format,
                    "conversation_id": meta.conversation_id,
                    "message_id": meta.message_id,
                }
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                pipe.expire(key, self._running_ttl)
            for stream_id, first, events, end in pending:
                key = PREFIX + stream_id
                fields: dict[Any, Any] = {
                    "s": first,
                    "e": orjson.dumps([event_to_dict(e) for e in events]),
                }
                if end:
                    fields["end"] = 1
                pipe.xadd(key, fields)
                ttl = self._retention if end else self._running_ttl
                pipe.expire(key, ttl)
                pipe.expire(key + ":meta", ttl)
            await pipe.execute()

    # -- any instance's side ------------------------------------------------

    async def meta(self, stream_id: str) -> StreamMeta | None:
        raw: Any = await self._client.hgetall(PREFIX + stream_id + ":meta")
        if not raw:
            return None
        return StreamMeta(
            stream_id,
            raw[b"model"].decode(),
            int(raw[b"created"]),
            raw[b"include_usage"] == b"1",
            raw.get(b"format", b"openai").decode(),
            raw.get(b"conversation_id", b"").decode(),
            raw.get(b"message_id", b"").decode(),
        )

    async def entries(self, stream_id: str, block_ms: int = 1000) -> AsyncIterator[Entry]:
        """Every stored batch in order, then new ones as they come, until the end."""
        key = PREFIX + stream_id
        last = "0-0"
        while True:
            reply: Any = await self._client.xread({key: last}, block=block_ms, count=500)
            if not reply:
                yield Entry(0, [], False)  # a heartbeat: the caller may send a ping
                continue
            for _, items in reply:
                for entry_id, fields in items:
                    last = entry_id
                    events = [event_from_dict(d) for d in orjson.loads(fields[b"e"])]
                    end = fields.get(b"end") == b"1"
                    yield Entry(int(fields[b"s"]), events, end)
                    if end:
                        return

    async def request_cancel(self, stream_id: str) -> None:
        await self._client.publish(CANCEL_CHANNEL, stream_id)

    def listen_for_cancels(self, on_cancel: Callable[[str], None]) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen(on_cancel))

    async def _listen(self, on_cancel: Callable[[str], None]) -> None:
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(CANCEL_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            data: Any = message["data"]
                            on_cancel(data.decode())
            except redis.RedisError:
                logger.warning("shared event log: cancel listener lost Redis; retrying")
                await asyncio.sleep(1)

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        for task in (self._flusher, self._listener):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(redis.RedisError):
            await self.flush()
        await self._client.aclose()
