"""Watching one streaming response: the client's disconnect and the keep-alive clock."""

from __future__ import annotations

import asyncio
import time

from sluice.engine.log import EventLog
from sluice.http.asgi import Receive


class ResponseWatch:
    """Watches one response: the client's disconnect (a side task on ``receive``) and
    the keep-alive clock (a timer re-armed only while the stream is idle)."""

    __slots__ = (
        "_handle",
        "_interval",
        "_last_write",
        "_log",
        "_task",
        "disconnected",
        "ping_due",
    )

    def __init__(self, log: EventLog, receive: Receive, keepalive: float) -> None:
        self._log = log
        self.disconnected = False
        self.ping_due = False
        self._last_write = time.monotonic()
        self._interval = keepalive
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._listen(receive))
        self._handle = loop.call_later(keepalive, self._tick)

    async def _listen(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self._log.wake()
                return

    def _tick(self) -> None:
        idle = time.monotonic() - self._last_write
        if idle >= self._interval * 0.99:
            self.ping_due = True
            self._log.wake()
            idle = 0.0
        # Next check when a full interval of silence would have passed.
        self._handle = asyncio.get_running_loop().call_later(self._interval - idle, self._tick)

    def wrote(self) -> None:
        self._last_write = time.monotonic()
        self.ping_due = False

    def stop(self) -> None:
        self._handle.cancel()
        self._task.cancel()
