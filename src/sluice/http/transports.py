"""Where the relay writes: an HTTP event-stream response body, or a WebSocket.

``SSEResponse`` sends its headers with the first write (or ping), so the status can
still be chosen until then: ``decide`` waits for a stream's first event and answers an
error that comes first with its own HTTP status (the OpenAI API's rule: the status is
decided before the first byte, failures after it go in-band).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from sluice.engine.stream import Stream
from sluice.events import StreamError, Usage
from sluice.http.asgi import SSE_HEADERS, Send, send_error
from sluice.wire.sse import encode_comment

PING = encode_comment("ping")


class SSEResponse:
    __slots__ = ("_headers", "_send", "started")

    def __init__(
        self, send: Send, stream_id: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self._send = send
        self._headers = [
            *SSE_HEADERS,
            (b"x-sluice-stream-id", stream_id.encode()),
            *(extra or ()),
        ]
        self.started = False

    async def start(self) -> None:
        if not self.started:
            self.started = True
            await self._send(
                {"type": "http.response.start", "status": 200, "headers": self._headers}
            )

    async def write(self, body: bytes) -> None:
        if not self.started:
            await self.start()
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def ping(self) -> None:
        await self.write(PING)

    async def end(self) -> None:
        await self.start()
        await self._send({"type": "http.response.body", "body": b""})

    async def decide(self, stream: Stream, keepalive: float) -> bool:
        """Wait (at most ``keepalive``) for the first event that decides the status. An
        error first is sent as an HTTP error (returns False); otherwise True, and the
        relay starts the body. (A usage estimate may precede a final error; it decides
        nothing.)"""
        try:
            async with asyncio.timeout(keepalive):
                while not stream.closed:
                    if any(type(event) is not Usage for event in stream.events):
                        break
                    await stream.wait(len(stream.events))
        except TimeoutError:
            return True  # still waiting: the headers go out with a keep-alive ping
        first = next((event for event in stream.events if type(event) is not Usage), None)
        if type(first) is StreamError and not self.started:
            await send_error(self._send, first)
            return False
        return True


class SocketFrames:
    """Frames (JSON objects) for a WebSocket shared by several streams: ``send_text``
    is the socket's own serialised sender."""

    __slots__ = ("_send_text",)

    def __init__(self, send_text: Callable[[str], Awaitable[None]]) -> None:
        self._send_text = send_text

    async def write(self, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            await self._send_text(orjson.dumps(frame).decode())

    async def ping(self) -> None:
        return None  # WebSocket keep-alive is the protocol's own ping
