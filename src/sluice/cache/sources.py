"""Where a cached or shared answer's events come from: the ``source`` an answer is
started with instead of a model (``Engine.start(..., source=...)``).

- ``replay``: a cached answer — at once (in slices, so a long one never holds the event
  loop for long), or at the pace it was generated;
- ``follow``: an identical answer in flight, read as one of its subscribers;
- ``Lead``: the first request's own view of the shared answer it caused. The shared
  answer (the *root*) belongs to no client: each request, the first included, is its
  own answer following it, so one client's stop, budget or disconnect ends only its
  own answer, and the root's upstream call is cancelled only when nobody follows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sluice.cache.entry import CachedAnswer, cached_usage
from sluice.engine.generation import Generation
from sluice.engine.stream import LocalStream, Stream, batches, read
from sluice.events import Event

#: Events per batch of an immediate replay: the relay writes (and yields to the event
#: loop) between batches.
SLICE = 256


async def replay(answer: CachedAnswer, *, paced: bool) -> AsyncIterator[list[Event]]:
    """A cached answer's batches: all at once, or each at its original offset."""
    replayed = answer.replayed()
    if not paced:
        events = [event for _, batch in replayed for event in batch]
        for first in range(0, len(events), SLICE):
            yield events[first : first + SLICE]
            await asyncio.sleep(0)
        return
    loop = asyncio.get_running_loop()
    start = loop.time()
    for offset, batch in replayed:
        delay = start + offset / 1000 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield batch


async def follow(leader: Stream) -> AsyncIterator[list[Event]]:
    """A leader's batches as one of its subscribers; usage marked as not spent here.
    A root not yet running (its first request still being admitted) is started: this
    request was admitted, and wants it."""
    if isinstance(leader, LocalStream):
        leader.generation.start()
    async for batch in batches(leader):
        yield [cached_usage(event) for event in batch]


class Lead:
    """The first request's hold on the root it caused: subscribed from the start (so the
    root cannot end while the request is admitted and started), released when the
    request's own answer stops reading — or by ``release`` if it never started reading.
    The root runs (calls the model) only once an admitted request reads it."""

    __slots__ = ("_released", "_taken", "root")

    def __init__(self, root: Generation) -> None:
        self.root = root
        root.subscribe()
        self._taken = False
        self._released = False

    async def events(self) -> AsyncIterator[list[Event]]:
        self._taken = True
        self.root.start()
        try:
            async for batch in read(LocalStream(self.root)):
                yield batch
        finally:
            if self._release():
                await self.root.wait()

    def release(self) -> None:
        """Let go of a root that was never read (the request failed before its answer
        started reading, or its answer ended without reading). Idempotent. A root
        nobody else follows ends at once, without ever calling the model."""
        if not self._taken and not self._released:
            root = self.root
            if not root.started:
                root.start()
                if root.subscribers <= 1:
                    # Only this request held it: cancelled before its first step, it
                    # closes its log without ever opening an attempt.
                    root.cancel("client_left")
            self._release()

    def _release(self) -> bool:
        if self._released:
            return False
        self._released = True
        return self.root.unsubscribe()
