"""Crash recovery with a shared Redis: answers a dead instance left ``streaming`` become
``incomplete`` while the gateway runs, not at the next restart.

Alone, a gateway marks every ``streaming`` answer at start-up (nobody else can be
writing them). With Redis, other instances may be, so a sweep every few seconds asks,
for each answer untouched for a while, whether the instance running its stream still
holds its lease: gone means dead. An answer whose stream left no metadata in Redis (it
expired, or Redis restarted empty) is dead once untouched for ``ORPHAN_AFTER`` seconds —
a live saver touches its row at least every ``TOUCH_EVERY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection

from sluice.chat.saver import TOUCH_EVERY
from sluice.store.conversations import ConversationStore
from sluice.store.shared_log import Outage, RedisEventLogs

logger = logging.getLogger("sluice.chat")

#: Seconds between sweeps.
SWEEP_EVERY = 5.0
#: Untouched this long, an answer is worth asking about (two missed touches).
QUIET_AFTER = 2 * TOUCH_EVERY
#: Untouched this long with nothing in Redis to ask, an answer is dead.
ORPHAN_AFTER = 30.0


class Recovery:
    def __init__(
        self,
        store: ConversationStore,
        shared: RedisEventLogs | None,
        *,
        every: float = SWEEP_EVERY,
    ) -> None:
        self._store = store
        self._shared = shared
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Sweep in the background from now on (with Redis; alone there is nothing to
        sweep for after start-up)."""
        if self._shared is not None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        outage = Outage("crash-recovery sweep", longest=30.0)
        while True:
            try:
                recovered = await self.sweep()
            # Redis or the database, any driver: the sweep must outlive every outage.
            except Exception as exc:
                await asyncio.sleep(max(self._every, outage.failed(exc)))
                continue
            outage.recovered()
            if recovered:
                logger.warning(
                    "marked %d answer(s) left by a dead instance as incomplete", recovered
                )
            await asyncio.sleep(self._every)

    async def sweep(self) -> int:
        """One pass; returns how many answers it marked ``incomplete``."""
        return await self._store.recover_interrupted(QUIET_AFTER, dead=self._dead)

    async def _dead(self, answers: list[tuple[str, str | None, float]]) -> Collection[str]:
        assert self._shared is not None
        alive = await self._shared.owners_alive(sorted({s for _, s, _ in answers if s}))
        now = time.time()
        dead = []
        for message_id, stream_id, touched in answers:
            owner = alive.get(stream_id) if stream_id else None
            if owner is False or (owner is None and now - touched > ORPHAN_AFTER):
                dead.append(message_id)
        return dead

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
