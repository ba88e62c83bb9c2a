"""``GET /ws``: the chat protocol over one WebSocket, several streams at once.

Client frames: ``{"type": "chat", …turn fields…}``, ``{"type": "stop", "stream_id"}``,
``{"type": "resume", "stream_id", "after"}``, ``{"type": "ping"}``. Server frames are
the SSE endpoint's, each with its ``stream_id`` and ``seq``. A malformed client frame
gets an ``error`` frame naming the problem and the socket stays open. Close codes: 1009
for an oversized frame (uvicorn's ``ws_max_size``), 1011 for a server error, 1008 when
the socket's key or session stops being valid (checked on every frame and every two
seconds). A stream of another principal is "not found", like one that never was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from sluice.chat.service import ChatService
from sluice.engine.engine import Engine
from sluice.engine.stream import LocalStream, Stream
from sluice.errors import RequestError, SluiceError
from sluice.http.asgi import Scope
from sluice.http.chat import ContinuedFrames
from sluice.http.gate import principal_of
from sluice.http.relay import Cut, relay
from sluice.http.transports import SocketFrames

logger = logging.getLogger("sluice.http")


def error_frame(exc: SluiceError, stream_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "error",
        "error_type": exc.type,
        "message": exc.message,
        "code": exc.code,
        "param": exc.param,
        "retryable": exc.retryable,
    }
    if stream_id is not None:
        frame["stream_id"] = stream_id
    return frame


#: Seconds between checks that the socket's key or session is still valid while the
#: client sends nothing (every frame is checked too).
RECHECK_SECONDS = 2.0

Recheck = Callable[[Scope], Awaitable[None]]


class ChatSocket:
    def __init__(
        self,
        websocket: WebSocket,
        chat: ChatService,
        engine: Engine,
        recheck: Recheck | None = None,
        *,
        send_timeout: float | None = None,
    ) -> None:
        self._ws = websocket
        self._send_timeout = send_timeout
        self._chat = chat
        self._engine = engine
        self._recheck = recheck
        self._relays: dict[str, asyncio.Task[None]] = {}
        self._sending = asyncio.Lock()

    async def run(self) -> None:
        await self._ws.accept()
        guard = asyncio.get_running_loop().create_task(self._guard())
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                if not await self._still_valid():
                    return
                await self._handle(raw)
        except WebSocketDisconnect:
            return
        except Exception:
            logger.exception("websocket session failed")
            with contextlib.suppress(Exception):
                await self._ws.close(code=1011, reason="server error")
        finally:
            guard.cancel()
            # Generations are detached: leaving stops only this socket's relays.
            for task in self._relays.values():
                task.cancel()

    async def _still_valid(self) -> bool:
        """Revocation reaches open sockets: a revoked or expired key, or a session that
        ended, closes the socket with 1008 and stops its relays."""
        if self._recheck is None:
            return True
        try:
            await self._recheck(self._ws.scope)
        except SluiceError as exc:
            for task in self._relays.values():
                task.cancel()
            with contextlib.suppress(Exception):
                async with self._sending:
                    await self._ws.close(code=1008, reason=exc.message[:120])
            return False
        return True

    async def _guard(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_SECONDS)
            if not await self._still_valid():
                return

    async def send(self, frame: dict[str, Any]) -> None:
        await self._send_text(orjson.dumps(frame).decode())

    async def _send_text(self, text: str) -> None:
        async with self._sending:
            await self._ws.send_text(text)

    async def _handle(self, raw: str) -> None:
        try:
            frame = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            await self.send(error_frame(RequestError(f"The frame is not valid JSON: {exc}")))
            return
        if not isinstance(frame, dict):
            await self.send(error_frame(RequestError("A frame must be a JSON object.")))
            return
        kind = frame.pop("type", None)
        try:
            if kind == "chat":
                turn = await self._chat.start(self._chat.parse(frame), principal_of(self._ws.scope))
                self._relay(LocalStream(turn.generation), 0, turn.prefix)
            elif kind == "stop":
                await self._stop(_stream_id(frame))
            elif kind == "resume":
                await self._resume(_stream_id(frame), frame.get("after", 0))
            elif kind == "ping":
                await self.send({"type": "pong"})
            else:
                raise RequestError(
                    f"Unknown frame type {kind!r}: use chat, stop, resume or ping.", param="type"
                )
        except SluiceError as exc:
            await self.send(error_frame(exc, frame.get("stream_id")))

    @property
    def _reader(self) -> str:
        return principal_of(self._ws.scope).owner

    async def _stop(self, stream_id: str) -> None:
        stream = await self._engine.open_stream(stream_id, reader=self._reader)
        await stream.cancel()

    async def _resume(self, stream_id: str, after: Any) -> None:
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise RequestError("'after' must be a non-negative integer.", param="after")
        self._relay(await self._engine.open_stream(stream_id, reader=self._reader), after)

    def _relay(self, stream: Stream, after: int, prefix: str = "") -> None:
        stream_id = stream.info.id
        previous = self._relays.pop(stream_id, None)
        if previous is not None:
            previous.cancel()
        task = asyncio.get_running_loop().create_task(self._pump(stream, after, prefix))
        self._relays[stream_id] = task
        task.add_done_callback(
            lambda _: (
                self._relays.pop(stream_id, None) if self._relays.get(stream_id) is task else None
            )
        )

    async def _pump(self, stream: Stream, after: int, prefix: str = "") -> None:
        try:
            async with stream.subscribe():
                await relay(
                    stream,
                    ContinuedFrames(stream.info, prefix),
                    SocketFrames(self._send_text),
                    after=after,
                    keepalive=None,
                    send_timeout=self._send_timeout,
                )
        except (Cut, WebSocketDisconnect, RuntimeError):
            return  # the socket closed under us


def _stream_id(frame: dict[str, Any]) -> str:
    stream_id = frame.get("stream_id")
    if not isinstance(stream_id, str) or not stream_id:
        raise RequestError("'stream_id' must be a non-empty string.", param="stream_id")
    return stream_id
