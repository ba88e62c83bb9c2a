"""Event logs shared between gateway instances, in Redis Streams.

Keys, under the deployment's prefix (``redis_prefix``, "sluice" by default):

- ``{prefix}:stream:{id}``: one stream entry per flushed batch, with the sequence number
  of its first event; ``end`` closes it, ``lost`` says its owner had to drop the tail.
- ``{prefix}:stream:{id}:meta``: what a replay needs, the principal that owns the stream
  and the instance that runs it.
- ``{prefix}:instance:{id}``: an instance's lease, renewed every few seconds. A stream
  whose instance has no lease will never end by itself: a resumer ends it as
  ``incomplete`` instead of waiting forever.
- ``{prefix}:cancel``: the pub/sub channel stop requests travel on to the owner.

Writes never block the stream: batches are queued and a background flusher sends them
in pipelines every few milliseconds, so a resumer on another instance lags the owner by
at most that much. The queue is bounded: while Redis is unreachable, past the bound the
oldest writes of running streams are dropped and those streams are marked ``lost`` when
Redis returns (their resumers end cleanly instead of showing a gap); the owner's own
clients and saved answers never depend on the mirror.

Failing closed: on a request path (``meta``, ``entries``, ``alive``, ``request_cancel``)
Redis errors become ``Unavailable`` (503 with Retry-After) here, at the seam. The
background tasks (flusher, cancel listener, lease) log an outage once, back off, and
carry on when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from sluice.errors import Unavailable
from sluice.events import (
    Event,
    Finish,
    ReasoningDelta,
    RoleStart,
    TextDelta,
    ToolCallDelta,
)
from sluice.owners import ADMIN, ANONYMOUS
from sluice.store.redis_client import connect
from sluice.wire.events_json import event_from_dict, event_to_dict

logger = logging.getLogger("sluice.store")

#: What an unreachable Redis raises (redis-py's errors; refused, reset and timed-out
#: sockets are OSErrors).
REDIS_ERRORS = (RedisError, OSError)

_FLUSH_EVERY = 0.01
#: An instance's lease lives this long unless renewed every ``RENEW_EVERY`` seconds.
LEASE_SECONDS = 10.0
RENEW_EVERY = 3.0
#: Silence on a stream after which a resumer asks whether its instance still lives.
QUIET_SECONDS = 3.0

# The lost marker goes only where the stream's metadata still is (after a Redis restart
# there is nothing left to mark, and a partial metadata hash would be worse).
_MARK_LOST = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'lost', 1)
redis.call('XADD', KEYS[1], '*', 's', ARGV[1], 'e', '[]', 'end', 1, 'lost', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 1
"""


#: Prefix of a stop request that applies only if nobody on the running instance reads
#: the stream (stream ids are hex, so it cannot be mistaken for one).
IF_IDLE = "if-idle:"


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
    #: Who may read, resume and stop it (see sluice.owners).
    owner: str = ANONYMOUS
    #: The gateway instance running it (its lease says whether it lives); "" if unknown.
    instance: str = ""
    #: Its owner dropped writes while Redis was unreachable.
    lost: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored batch: events numbered from ``first``; ``end`` closes the stream."""

    first: int
    events: list[Event]
    end: bool


@dataclass(slots=True)
class _Batch:
    stream_id: str
    first: int
    payload: bytes
    end: bool


@dataclass(slots=True)
class _Lost:
    #: Sequence number of the first event that never reached Redis.
    first: int
    ended: bool = False
    #: The lost marker is in Redis; later writes of the stream are ignored.
    marked: bool = False


class Outage:
    """A dependency's outage as one background task sees it: logged when it starts and
    when it ends, never per retry; the wait before the next try doubles up to a cap."""

    def __init__(self, task: str, *, shortest: float = 0.25, longest: float = 5.0) -> None:
        self._task = task
        self._shortest = shortest
        self._longest = longest
        self._delay = shortest
        self.down = False

    def failed(self, exc: BaseException) -> float:
        """Seconds to wait before trying again."""
        if not self.down:
            self.down = True
            self._delay = self._shortest
            logger.warning(
                "%s: failing (%s); retrying quietly until it works", self._task, type(exc).__name__
            )
        else:
            self._delay = min(self._delay * 2, self._longest)
        return self._delay

    def recovered(self) -> None:
        if self.down:
            self.down = False
            logger.warning("%s: working again", self._task)


@contextlib.contextmanager
def failing_closed() -> Iterator[None]:
    """Redis unreachable on a request path: a 503 the client may retry, never a 500."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise Unavailable(
            f"Shared state is unreachable ({type(exc).__name__}); retry shortly."
        ) from exc


class RedisEventLogs:
    """``client``: the process's Redis client (see ``store.redis_client``), which its
    owner closes; or a URL, for a client of its own that ``aclose`` closes."""

    def __init__(
        self,
        client: redis.Redis | str,
        *,
        retention_seconds: float,
        running_ttl: float = 7200,
        prefix: str = "sluice",
        instance: str | None = None,
        max_pending_batches: int = 10_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
        lease_seconds: float = LEASE_SECONDS,
        renew_every: float = RENEW_EVERY,
        quiet_seconds: float = QUIET_SECONDS,
    ) -> None:
        self._owns_client = isinstance(client, str)
        self._client: redis.Redis = connect(client) if isinstance(client, str) else client
        self._closed = False
        self._retention = max(1, int(retention_seconds))
        self._running_ttl = int(running_ttl)
        self.prefix = prefix
        #: This instance's id, recorded in the metadata of every stream it runs.
        self.instance = instance or secrets.token_hex(8)
        self._streams = prefix + ":stream:"
        self._cancel_channel = prefix + ":cancel"
        self._lease_key = self.lease_key(self.instance)
        self._lease_ttl = max(1, round(lease_seconds))
        self._renew_every = renew_every
        self._quiet = quiet_seconds
        self._max_batches = max_pending_batches
        self._max_bytes = max_pending_bytes
        self._pending: deque[_Batch] = deque()
        self._pending_bytes = 0
        self._metas: dict[str, StreamMeta] = {}
        self._lost: dict[str, _Lost] = {}
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._lease: asyncio.Task[None] | None = None
        # Retried at least every 2 s: resumable again soon after Redis is back.
        self._flush_outage = Outage("shared event log: writing to Redis", longest=2.0)
        self._shedding = False

    def lease_key(self, instance: str) -> str:
        return f"{self.prefix}:instance:{instance}"

    @property
    def pending(self) -> tuple[int, int]:
        """Queued batches and their bytes (bounded by the constructor's limits)."""
        return len(self._pending), self._pending_bytes

    # -- the owner's side ---------------------------------------------------

    def begin(self, meta: StreamMeta) -> None:
        """Queue the metadata of a new stream (written before its first batch)."""
        self._metas[meta.id] = meta
        self._kick()

    def publish(self, stream_id: str, first: int, events: list[Event], end: bool = False) -> None:
        """Queue a batch for the shared log; returns at once."""
        lost = self._lost.get(stream_id)
        if lost is not None:
            if end:
                self._lost_ended(stream_id, lost)
            return
        payload = orjson.dumps([event_to_dict(e) for e in events])
        self._pending.append(_Batch(stream_id, first, payload, end))
        self._pending_bytes += len(payload)
        self._shed()
        self._kick()

    def _shed(self) -> None:
        """Keep the queue within its bounds: drop every queued write of the stream with
        the oldest one, preferring running streams (dropping one stops its growth for
        good; a finished stream's queue is complete) and mark it lost."""
        while self._pending and (
            len(self._pending) > self._max_batches or self._pending_bytes > self._max_bytes
        ):
            finished = {b.stream_id for b in self._pending if b.end}
            victim = next(
                (b.stream_id for b in self._pending if b.stream_id not in finished),
                self._pending[0].stream_id,
            )
            dropped = [b for b in self._pending if b.stream_id == victim]
            self._pending = deque(b for b in self._pending if b.stream_id != victim)
            self._pending_bytes -= sum(len(b.payload) for b in dropped)
            if not self._shedding:
                self._shedding = True  # once per outage
                logger.warning(
                    "shared event log: write queue full while Redis is unreachable; "
                    "dropping the oldest streams' writes (marked lost for resumers)"
                )
            self._lose(victim, dropped)

    def _lose(self, stream_id: str, dropped: list[_Batch]) -> None:
        first = min(b.first for b in dropped)
        lost = self._lost.get(stream_id)
        if lost is None:
            lost = self._lost[stream_id] = _Lost(first)
        lost.first = min(lost.first, first)
        if any(b.end for b in dropped):
            self._lost_ended(stream_id, lost)

    def _lost_ended(self, stream_id: str, lost: _Lost) -> None:
        lost.ended = True
        if lost.marked:
            del self._lost[stream_id]
        elif stream_id in self._metas:
            # Ended before its metadata ever reached Redis: nobody can ask for it.
            del self._metas[stream_id]
            del self._lost[stream_id]

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
            except REDIS_ERRORS as exc:
                self._wake.set()
                await asyncio.sleep(self._flush_outage.failed(exc))
            else:
                self._flush_outage.recovered()
                self._shedding = False

    async def flush(self) -> None:
        # One flush at a time keeps each stream's entries in order.
        async with self._flushing:
            pending, self._pending = self._pending, deque()
            self._pending_bytes = 0
            metas, self._metas = self._metas, {}
            marks = [(sid, lost) for sid, lost in self._lost.items() if not lost.marked]
            if not pending and not metas and not marks:
                return
            try:
                await self._write(pending, metas, marks)
            except REDIS_ERRORS:
                self._put_back(pending, metas)
                raise
            for stream_id, lost in marks:
                if lost.ended:
                    self._lost.pop(stream_id, None)
                else:
                    lost.marked = True

    def _put_back(self, pending: deque[_Batch], metas: dict[str, StreamMeta]) -> None:
        # In front of what came meanwhile: order is kept. Streams lost meanwhile keep
        # their metadata (for the marker) but not their batches.
        self._metas = {**metas, **self._metas}
        for stream_id in [s for s, lost in self._lost.items() if lost.ended]:
            self._lost_ended(stream_id, self._lost[stream_id])
        again = []
        for batch in pending:
            lost = self._lost.get(batch.stream_id)
            if lost is None:
                again.append(batch)
            else:
                self._lose(batch.stream_id, [batch])
        self._pending.extendleft(reversed(again))
        self._pending_bytes += sum(len(b.payload) for b in again)
        self._shed()

    async def _write(
        self,
        pending: deque[_Batch],
        metas: dict[str, StreamMeta],
        marks: list[tuple[str, _Lost]],
    ) -> None:
        streams = self._streams
        async with self._client.pipeline(transaction=False) as pipe:
            # Every write renews the lease too: metadata naming this instance is never
            # visible without a lease saying it lives.
            pipe.set(self._lease_key, b"1", ex=self._lease_ttl)
            for meta in metas.values():
                key = streams + meta.id + ":meta"
                mapping = {
                    "model": meta.model,
                    "created": meta.created,
                    "include_usage": int(meta.include_usage),
                    "format": meta.format,
                    "conversation_id": meta.conversation_id,
                    "message_id": meta.message_id,
                    "owner": meta.owner,
                    "instance": self.instance,
                }
                pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
                pipe.expire(key, self._running_ttl)
            for batch in pending:
                key = streams + batch.stream_id
                fields: dict[Any, Any] = {"s": batch.first, "e": batch.payload}
                if batch.end:
                    fields["end"] = 1
                pipe.xadd(key, fields)
                ttl = self._retention if batch.end else self._running_ttl
                pipe.expire(key, ttl)
                pipe.expire(key + ":meta", ttl)
            for stream_id, lost in marks:
                key = streams + stream_id
                # The shared log ends here even if the stream runs on: keep it only as
                # long as a finished one.
                pipe.eval(_MARK_LOST, 2, key, key + ":meta", lost.first, self._retention)
            await pipe.execute()

    def hold_lease(self) -> None:
        """Renew this instance's lease in the background (needs the running loop)."""
        self._lease = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        outage = Outage("shared event log: renewing this instance's lease", longest=1.0)
        while True:
            try:
                await self._client.set(self._lease_key, b"1", ex=self._lease_ttl)
            except REDIS_ERRORS as exc:
                # Retried within a second: back up soon after Redis is, before a
                # resumer elsewhere takes the silence for a dead instance.
                await asyncio.sleep(outage.failed(exc))
                continue
            outage.recovered()
            await asyncio.sleep(self._renew_every)

    # -- any instance's side ------------------------------------------------

    async def meta(self, stream_id: str) -> StreamMeta | None:
        with failing_closed():
            raw: Any = await self._client.hgetall(self._streams + stream_id + ":meta")
        if not raw or b"model" not in raw:
            return None
        return StreamMeta(
            stream_id,
            raw[b"model"].decode(),
            int(raw[b"created"]),
            raw[b"include_usage"] == b"1",
            raw.get(b"format", b"openai").decode(),
            raw.get(b"conversation_id", b"").decode(),
            raw.get(b"message_id", b"").decode(),
            # A stream written before owners existed belongs to the admin alone.
            raw.get(b"owner", ADMIN.encode()).decode(),
            raw.get(b"instance", b"").decode(),
            raw.get(b"lost") == b"1",
        )

    async def alive(self, meta: StreamMeta) -> bool:
        """Whether the instance running ``meta``'s stream holds its lease (one written
        before leases existed is taken to be alive)."""
        if not meta.instance:
            return True
        with failing_closed():
            return bool(await self._client.exists(self.lease_key(meta.instance)))

    async def owners_alive(self, stream_ids: list[str]) -> dict[str, bool | None]:
        """For each stream: does its instance hold its lease (None: no metadata left, or
        none naming an instance)."""
        if not stream_ids:
            return {}
        with failing_closed():
            async with self._client.pipeline(transaction=False) as pipe:
                for stream_id in stream_ids:
                    pipe.hget(self._streams + stream_id + ":meta", "instance")
                raw: list[Any] = await pipe.execute()
            instances = [value.decode() if value else "" for value in raw]
            distinct = sorted({i for i in instances if i})
            async with self._client.pipeline(transaction=False) as pipe:
                for instance in distinct:
                    pipe.exists(self.lease_key(instance))
                leases = dict(zip(distinct, await pipe.execute(), strict=True))
        return {
            stream_id: bool(leases[instance]) if instance else None
            for stream_id, instance in zip(stream_ids, instances, strict=True)
        }

    async def entries(
        self, meta: StreamMeta, block_ms: int = 1000, *, quiet_seconds: float | None = None
    ) -> AsyncIterator[Entry]:
        """Every stored batch in order, then new ones as they come, until the end; an
        empty entry is a heartbeat (the caller may send a ping). A stream that cannot
        end by itself ends here, with ``incomplete`` for each open choice: its tail was
        lost, or its instance died (no lease, twice running, once the stream has been
        silent for ``quiet_seconds``)."""
        key = self._streams + meta.id
        quiet = self._quiet if quiet_seconds is None else quiet_seconds
        loop = asyncio.get_running_loop()
        last = "0-0"
        expected = 1
        choices = _Choices()
        heard = loop.time()
        misses = 0
        while True:
            with failing_closed():
                reply: Any = await self._client.xread({key: last}, block=block_ms, count=500)
            if not reply:
                if loop.time() - heard >= quiet:
                    misses = 0 if await self.alive(meta) else misses + 1
                    if misses >= 2:
                        yield choices.ending(expected)
                        return
                yield Entry(expected, [], False)
                continue
            heard = loop.time()
            misses = 0
            for _, items in reply:
                for entry_id, fields in items:
                    last = entry_id
                    first = int(fields[b"s"])
                    if b"lost" in fields or first > expected:
                        # The owner dropped writes while Redis was away: no gap shown.
                        yield choices.ending(expected)
                        return
                    events = [event_from_dict(d) for d in orjson.loads(fields[b"e"])]
                    # A batch written twice (a pipeline retried after a partial write).
                    events = events[expected - first :]
                    choices.saw(events)
                    end = fields.get(b"end") == b"1"
                    yield Entry(expected, events, end)
                    expected += len(events)
                    if end:
                        return

    async def request_cancel(self, stream_id: str, *, if_idle: bool = False) -> None:
        """Ask the instance running ``stream_id`` to stop it; ``if_idle``: only if nobody
        there reads it (the last follower elsewhere left)."""
        with failing_closed():
            await self._client.publish(
                self._cancel_channel, (IF_IDLE if if_idle else "") + stream_id
            )

    def listen_for_cancels(self, on_cancel: Callable[[str], None]) -> None:
        self._listener = asyncio.get_running_loop().create_task(self._listen(on_cancel))

    async def _listen(self, on_cancel: Callable[[str], None]) -> None:
        outage = Outage("shared event log: listening for stop requests")
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self._cancel_channel)
                    outage.recovered()
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            data: Any = message["data"]
                            on_cancel(data.decode())
            except REDIS_ERRORS as exc:
                await asyncio.sleep(outage.failed(exc))

    async def ping(self) -> None:
        await self._client.ping()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in (self._flusher, self._listener, self._lease):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(*REDIS_ERRORS):
            await self.flush()
        if self._lease is not None:
            # Gone at once, not in ten seconds: resumers of anything left end now.
            with contextlib.suppress(*REDIS_ERRORS):
                await self._client.delete(self._lease_key)
        if self._owns_client:
            await self._client.aclose()


class _Choices:
    """Which choices of a replayed stream have begun and not finished."""

    _OPENING = (RoleStart, TextDelta, ReasoningDelta, ToolCallDelta)

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._finished: set[int] = set()

    def saw(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is Finish:
                self._finished.add(event.index)
                self._open.discard(event.index)
            elif isinstance(event, self._OPENING) and event.index not in self._finished:
                self._open.add(event.index)

    def ending(self, first: int) -> Entry:
        """The end of an interrupted stream: ``incomplete`` for each open choice (the
        first one, if none had begun)."""
        indexes = self._open or ({0} if not self._finished else set())
        return Entry(first, [Finish("incomplete", i) for i in sorted(indexes)], True)
