"""The HTTP connection: how long a client may take to send a request head, and how many
connections one process holds (slowloris).

uvicorn's httptools protocol with two additions, configured from the served gateway's
settings (found through the app, so ``--workers N`` processes configure themselves):

- a header timeout: a connection that has not sent a complete request line and headers
  ``header_timeout_seconds`` after it opened (or after the first byte of a later request
  on a kept-alive connection) is closed. uvicorn itself only times out idle keep-alive
  connections, so a client dribbling a header a byte at a time held a socket forever.
- a connection cap: when a new connection takes the process past ``max_connections``,
  the longest-idle connections with no request in progress (half-open heads, idle
  keep-alives) are closed to make room — an attacker's stalled sockets go, never a
  stream in flight. If every connection is busy, the new one is closed instead.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sluice.settings import Settings

logger = logging.getLogger("sluice.http")

_DEFAULT_HEADER_TIMEOUT: float = Settings.model_fields["header_timeout_seconds"].default
_DEFAULT_MAX_CONNECTIONS: int = Settings.model_fields["max_connections"].default
#: Seconds between two "connection cap reached" warnings: an attack must not flood the log.
_WARN_EVERY = 10.0


def _settings_of(app: object) -> Settings | None:
    # uvicorn may wrap the application in its own middleware.
    for _ in range(8):
        settings = getattr(app, "settings", None)
        if isinstance(settings, Settings):
            return settings
        app = getattr(app, "app", None)
    return None


class GatewayProtocol(HttpToolsProtocol):
    _warned_at: ClassVar[float] = float("-inf")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        settings = _settings_of(self.app)
        self.header_timeout = (
            settings.header_timeout_seconds if settings else _DEFAULT_HEADER_TIMEOUT
        )
        self.max_connections = settings.max_connections if settings else _DEFAULT_MAX_CONNECTIONS
        self.header_timer: asyncio.TimerHandle | None = None
        self.last_active = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        super().data_received(data)

    def on_message_begin(self) -> None:
        # A later request on a kept-alive connection gets its own deadline from its first
        # byte (the first request's runs from connection_made).
        if self.header_timer is None:
            self._arm_header_timer()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self.last_active = self.loop.time()
        super().on_response_complete()

    @property
    def idle(self) -> bool:
        """No request in progress: a head still arriving, or a kept-alive connection."""
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing():
            return
        if self.idle:
            self.transport.close()
        else:
            # A pipelined head stalls behind a response still being sent: let that one
            # finish, then close.
            self.cycle.keep_alive = False

    def _make_room(self) -> None:
        """Close the longest-idle connections until the cap holds again."""
        idle: list[GatewayProtocol] = []
        closing = 0
        for connection in self.connections:
            if not isinstance(connection, GatewayProtocol):
                continue  # a WebSocket: always in use
            if connection.transport.is_closing():
                closing += 1  # closed already, not yet gone from the set
            elif connection is not self and connection.idle:
                idle.append(connection)
        excess = len(self.connections) - closing - self.max_connections
        if excess <= 0:
            return
        for connection in heapq.nsmallest(excess, idle, key=lambda c: c.last_active):
            connection.transport.close()
        if len(idle) < excess:
            # Every other connection is busy: the cap holds by refusing this one.
            self.transport.close()
        now = self.loop.time()
        if now - GatewayProtocol._warned_at >= _WARN_EVERY:
            GatewayProtocol._warned_at = now
            logger.warning(
                "connection cap (max_connections=%d) reached: closing idle connections",
                self.max_connections,
            )
