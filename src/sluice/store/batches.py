"""Rows written in batches by one background task, never on the request path.

A table whose rows record what requests did (the request log, usage records) is written
through a ``RowBatches``: ``add`` queues a row and returns (no await, no database
round trip per request); a task writes what is queued every ``every`` seconds, up to
``batch`` rows per statement. While the database is down rows wait, at most ``limit``
(past that the oldest are dropped and counted), and go out once it is back. A batch the
database refuses for its content (not for being down) is written row by row, and a row
it still refuses is dropped and counted: one bad row must never hold up the rest.

::

    add(row) ──> pending ──(every s, or flush())──> insert(rows[:batch]) ──> after()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

logger = logging.getLogger("sluice.store")

Row = dict[str, Any]
Insert = Callable[[list[Row]], Awaitable[None]]

_REFUSED = (DataError, IntegrityError, ProgrammingError)


class RowBatches:
    __slots__ = (
        "_after",
        "_batch",
        "_every",
        "_insert",
        "_limit",
        "_on_drop",
        "_pending",
        "_task",
        "dropped",
        "name",
    )

    def __init__(
        self,
        insert: Insert,
        *,
        name: str,
        every: float = 1.0,
        limit: int = 50_000,
        batch: int = 500,
        on_drop: Callable[[int], None] | None = None,
        after: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self._insert = insert
        self._every = every
        self._limit = limit
        self._batch = batch
        self._on_drop = on_drop
        #: Run after each round of writing that succeeded (the request log's sweep).
        self._after = after
        self._pending: deque[Row] = deque()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, row: Row) -> None:
        """Queue ``row``; the writer is started on first use. Never blocks or raises."""
        pending = self._pending
        if len(pending) >= self._limit:
            pending.popleft()
            self._dropped(1)
        pending.append(row)
        if self._task is None:
            self.start()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_forever())

    async def _write_forever(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.flush()
                if self._after is not None:
                    await self._after()
                if failing:
                    logger.warning("the %s are written again", self.name)
                failing = False
            except Exception as exc:
                if not failing:
                    logger.warning(
                        "writing the %s failed (%s); %d rows wait",
                        self.name,
                        type(exc).__name__,
                        len(self._pending),
                    )
                failing = True

    async def flush(self) -> None:
        """Write every pending row now."""
        pending = self._pending
        while pending:
            rows = [pending[i] for i in range(min(self._batch, len(pending)))]
            try:
                await self._insert(rows)
            except _REFUSED:
                for row in rows:
                    try:
                        await self._insert([row])
                    except _REFUSED as exc:
                        self._dropped(1)
                        logger.warning("a row of the %s was refused (%s)", self.name, exc)
            # Taken off only once written: a failure above leaves them for the next round.
            for _ in rows:
                pending.popleft()

    def _dropped(self, rows: int) -> None:
        self.dropped += rows
        if self._on_drop is not None:
            self._on_drop(rows)

    async def aclose(self) -> None:
        """Stop the writer and write what is left (shutdown)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("the last %d %s were lost (%s)", len(self._pending), self.name, exc)
