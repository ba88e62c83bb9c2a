"""The HTTP connection: how long a client may take to send a request, and how many
connections one process holds (slowloris, slow bodies).

uvicorn's httptools protocol with three additions, configured from the served gateway's
settings (found through the app, so ``--workers N`` processes configure themselves):

- a header timeout: a connection that has not sent a complete request line and headers
  ``header_timeout_seconds`` after it opened (or after the first byte of a later request
  on a kept-alive connection) is closed. uvicorn itself only times out idle keep-alive
  connections, so a client dribbling a header a byte at a time held a socket forever.
- a body timeout: a request whose body is not complete ``body_timeout_seconds`` after
  its headers is answered 408 (just closed if a response has started). Only the request
  body: once it is complete (httptools' ``on_message_complete``) the deadline is gone,
  and a response may stream for as long as it likes. A bodiless request never arms a
  timer (it is complete within the same read).
- a connection cap: when a new connection takes the process past ``max_connections``,
  first the longest-idle connections with no request in progress (half-open heads, idle
  keep-alives), then the connections that have been reading a request body the longest
  are closed to make room — an attacker's stalled sockets go, never a request fully
  received (its response may be a stream in flight). If no connection can go, the new
  one is closed instead.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from sluice.errors import RequestError
from sluice.settings import Settings
from sluice.wire.errors import error_body

logger = logging.getLogger("sluice.http")

_DEFAULT_HEADER_TIMEOUT: float = Settings.model_fields["header_timeout_seconds"].default
_DEFAULT_BODY_TIMEOUT: float = Settings.model_fields["body_timeout_seconds"].default
_DEFAULT_MAX_CONNECTIONS: int = Settings.model_fields["max_connections"].default
#: Seconds between two "connection cap reached" warnings: an attack must not flood the log.
_WARN_EVERY = 10.0


def _timeout_response() -> bytes:
    body = error_body(
        RequestError(
            "The request body was not received in time.", code="request_timeout", status=408
        )
    )
    head = (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"content-type: application/json\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n\r\n" % len(body)
    )
    return head + body


#: What a request whose body is late gets (written straight to the socket).
REQUEST_TIMEOUT_RESPONSE = _timeout_response()


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
        self.body_timeout = settings.body_timeout_seconds if settings else _DEFAULT_BODY_TIMEOUT
        self.max_connections = settings.max_connections if settings else _DEFAULT_MAX_CONNECTIONS
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        #: When the current request's headers completed, while its body is still coming.
        self.body_since: float | None = None
        self.last_active = self.loop.time()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        super().data_received(data)
        # Armed here, after the parser has seen everything this read brought: a request
        # complete in one read (every bodiless one) never costs a timer.
        if (
            self.body_since is not None
            and self.body_timer is None
            and not self.pipeline
            and not self.transport.is_closing()
        ):
            self._arm_body_timer()

    def on_message_begin(self) -> None:
        # A later request on a kept-alive connection gets its own deadline from its first
        # byte (the first request's runs from connection_made).
        if self.header_timer is None:
            self._arm_header_timer()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()
        # A new request-response cycle (not a WebSocket upgrade): its body is due now.
        if self.cycle is not None and self.cycle.scope is self.scope:
            self.body_since = self.loop.time()

    def on_message_complete(self) -> None:
        # The request is in: from here on its response runs as long as it needs.
        self.body_since = None
        self._disarm_body_timer()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self.last_active = now = self.loop.time()
        queued = bool(self.pipeline)
        super().on_response_complete()
        if queued and not self.pipeline and self.body_since is not None:
            # A pipelined request whose body stalled behind this response (reading was
            # paused) starts now, and so does its deadline.
            self.body_since = now
            self._disarm_body_timer()
            self._arm_body_timer()

    @property
    def idle(self) -> bool:
        """No request in progress: a head still arriving, or a kept-alive connection."""
        return self.cycle is None or self.cycle.response_complete

    @property
    def reading_body(self) -> bool:
        """The request in progress is still sending its body (and none before it is still
        being answered)."""
        return self.body_since is not None and not self.pipeline

    def _arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _arm_body_timer(self) -> None:
        assert self.body_since is not None
        deadline = self.body_since + self.body_timeout
        self.body_timer = self.loop.call_at(deadline, self._body_timeout)

    def _disarm_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

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

    def _body_timeout(self) -> None:
        self.body_timer = None
        if self.transport.is_closing() or not self.reading_body:
            # Closed already; or queued behind a response still being sent, in which
            # case on_response_complete starts its deadline afresh.
            return
        cycle = self.cycle
        if not cycle.response_started:
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
        # The application sees a disconnect, and anything it still sends goes nowhere.
        cycle.disconnected = True
        cycle.keep_alive = False
        cycle.message_event.set()
        self.transport.close()

    def _make_room(self) -> None:
        """Close the longest-idle connections, then those reading a request body the
        longest, until the cap holds again."""
        idle: list[GatewayProtocol] = []
        reading: list[GatewayProtocol] = []
        closing = 0
        for connection in self.connections:
            if not isinstance(connection, GatewayProtocol):
                continue  # a WebSocket: always in use
            if connection.transport.is_closing():
                closing += 1  # closed already, not yet gone from the set
            elif connection is self:
                continue
            elif connection.idle:
                idle.append(connection)
            elif connection.reading_body:
                reading.append(connection)
        excess = len(self.connections) - closing - self.max_connections
        if excess <= 0:
            return
        shed = heapq.nsmallest(excess, idle, key=lambda c: c.last_active)
        if len(shed) < excess:
            shed += heapq.nsmallest(
                excess - len(shed),
                reading,
                key=lambda c: c.body_since if c.body_since is not None else 0.0,
            )
        for connection in shed:
            connection.transport.close()
        if len(shed) < excess:
            # Every other connection is answering a request it has received in full: the
            # cap holds by refusing this one.
            self.transport.close()
        now = self.loop.time()
        if now - GatewayProtocol._warned_at >= _WARN_EVERY:
            GatewayProtocol._warned_at = now
            logger.warning(
                "connection cap (max_connections=%d) reached: closing idle and "
                "slow-body connections",
                self.max_connections,
            )
