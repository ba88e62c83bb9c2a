"""Watching one streaming response: the client's disconnect, the keep-alive clock, and
a client too slow to take what it is sent.

One side task waits on ``receive`` for the disconnect; one timer, re-armed only when it
fires, tells when a keep-alive comment is due and whether a send has been stuck longer
than the send timeout (a client that stopped reading must not make the server buffer an
answer without bound: it is cut off).
"""

from __future__ import annotations

import asyncio
import logging
import time

from sluice.engine.log import EventLog
from sluice.http.asgi import Receive

logger = logging.getLogger("sluice.http")


class ResponseWatch:
    __slots__ = (
        "_handle",
        "_interval",
        "_keepalive",
        "_last_write",
        "_listener",
        "_log",
        "_owner",
        "_send_timeout",
        "disconnected",
        "ping_due",
        "send_started",
        "stalled",
    )

    def __init__(
        self,
        log: EventLog,
        receive: Receive,
        keepalive: float,
        send_timeout: float | None = None,
    ) -> None:
        self._log = log
        self.disconnected = False
        self.stalled = False
        self.ping_due = False
        #: When the send in progress started (None: no send in progress).
        self.send_started: float | None = None
        self._last_write = time.monotonic()
        self._keepalive = keepalive
        self._send_timeout = send_timeout
        self._interval = min(keepalive, send_timeout / 2) if send_timeout else keepalive
        self._owner = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._listener = loop.create_task(self._listen(receive))
        self._handle = loop.call_later(self._interval, self._tick)

    async def _listen(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self._log.wake()
                return

    def _tick(self) -> None:
        now = time.monotonic()
        started = self.send_started
        if self._send_timeout and started is not None and now - started > self._send_timeout:
            self._cut_off()
            return
        idle = now - self._last_write
        if idle >= self._keepalive * 0.99:
            self.ping_due = True
            self._log.wake()
            idle = 0.0
        # Next look: when a full keep-alive interval of silence would have passed (or
        # sooner, for the send timeout).
        delay = max(0.01, min(self._interval, self._keepalive - idle))
        self._handle = asyncio.get_running_loop().call_later(delay, self._tick)

    def _cut_off(self) -> None:
        logger.warning("client too slow: no progress for %.0f s, cut off", self._send_timeout)
        self.stalled = self.disconnected = True
        # The owner is stuck in `send`; cancelling it is the only way out of the wait.
        if self._owner is not None:
            self._owner.cancel()
        self._log.wake()

    def wrote(self) -> None:
        self._last_write = time.monotonic()
        self.ping_due = False

    def stop(self) -> None:
        self._handle.cancel()
        self._listener.cancel()
