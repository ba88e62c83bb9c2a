"""SIGTERM drains the gateway first, under whichever server runs it.

uvicorn (alone, under ``--workers N`` or inside gunicorn's ``UvicornWorker``) and granian
each catch SIGTERM themselves, stop listening and then wait for open responses — at
best up to a graceful timeout, after which they are cut with no in-band record, at
worst for as long as a stream lasts. None of them tells the application before it
stops listening: the ASGI lifespan's shutdown comes after the connections are gone.
So the served gateway (:class:`ServedGateway`, what ``sluice.http:create_app`` returns)
puts itself in front of the server's own handler once the lifespan started:

- the first SIGTERM or SIGINT starts ``Gateway.drain`` (new work and health 503, active
  streams get ``drain_seconds``, the rest end in-band with ``shutting_down``) while the
  server still listens, and hands the signal to the server's handler when the drain is
  over; a second signal goes to the server at once (Ctrl-C twice still forces);
- a server that learns of signals through its event loop (granian registers them with
  ``loop.add_signal_handler``) starts its own shutdown at once as well; the lifespan
  shutdown then waits for the drain before anything is closed, so streams still get
  their deadline and their record as long as the server keeps the connections open;
- shutdown for any other reason (uvicorn's ``--limit-max-requests``) drains in the
  lifespan shutdown too.

Signals can only be taken in the main thread; elsewhere (a test running the app in a
thread) only the lifespan drain applies. The handlers are put back at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

from sluice.http.app import Gateway
from sluice.http.asgi import Message, Receive, Scope, Send

logger = logging.getLogger("sluice.http")

#: What orchestrators (SIGTERM) and terminals (SIGINT) send.
DRAINED_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | None


class DrainOnSignal:
    """Runs ``drain`` once, on the first signal or at shutdown, and forwards the signal
    to the handler it replaced when the drain is over."""

    def __init__(self, drain: Callable[[], Awaitable[None]]) -> None:
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Handler] = {}
        self._task: asyncio.Task[None] | None = None
        self._forwarded = False

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in DRAINED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: only hand the work to the loop.
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._signalled, sig)

    def _signalled(self, sig: int) -> None:
        if self._task is None:
            logger.info("signal %d: draining before the server shuts down", sig)
            self._task = asyncio.get_running_loop().create_task(self._drain_then(sig))
        elif not self._forwarded:
            # A second signal: the operator does not want to wait for the drain.
            self._forward(sig)

    async def _drain_then(self, sig: int | None) -> None:
        try:
            await self._drain()
        finally:
            if sig is not None and not self._forwarded:
                self._forward(sig)

    def _forward(self, sig: int) -> None:
        """The server's own handler takes it from here (and every later signal)."""
        self._forwarded = True
        previous = self._previous.get(sig)
        self.restore()
        if callable(previous):
            previous(sig, None)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(sig)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            # Not a handler Python installed (None): leave what is there.
            if handler is not None:
                signal.signal(sig, handler)
        self._previous.clear()

    async def finish(self) -> None:
        """At the lifespan's shutdown: drain if no signal did, wait for it, put the
        handlers back."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain_then(None))
        try:
            await asyncio.shield(self._task)
        finally:
            self.restore()


class ServedGateway:
    """The gateway as a server process runs it: a pure-ASGI layer that only looks at
    the lifespan (requests and their messages pass straight through)."""

    def __init__(self, gateway: Gateway) -> None:
        #: ``.app``, as servers' own wrappers name it (``http/server.py`` looks it up).
        self.app = gateway
        self.drain = DrainOnSignal(gateway.drain)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        drain = self.drain

        async def lifespan_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await drain.finish()
            return message

        async def lifespan_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                drain.install(asyncio.get_running_loop())
            await send(message)

        await self.app(scope, lifespan_receive, lifespan_send)
