"""``POST /chat``: one chat turn as Server-Sent Events in the app protocol.

The turn is validated and started (conversation found or created, question stored) before
the response begins; from then on everything — tokens, usage, errors — is an event. The
generation is detached: a client that drops loses nothing and comes back through
``GET /v1/streams/{id}`` (same events, same ids).
"""

from __future__ import annotations

import orjson

from sluice.chat.frames import turn_frames
from sluice.chat.service import ChatService, Turn
from sluice.errors import RequestError, SluiceError
from sluice.http.asgi import (
    SSE_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    content_length,
    read_body,
    send_error,
)
from sluice.http.gate import principal_of
from sluice.http.watch import ResponseWatch
from sluice.wire.chat_frames import sse
from sluice.wire.sse import encode_comment

PING = encode_comment("ping")


class ChatEndpoint:
    def __init__(self, chat: ChatService, *, max_body_bytes: int, keepalive_seconds: float):
        self._chat = chat
        self._limit = max_body_bytes
        self._keepalive = keepalive_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(send, RequestError("Use POST.", status=405, code="method_not_allowed"))
            return
        try:
            raw = await read_body(receive, self._limit, content_length(scope))
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise RequestError(f"The request body is not valid JSON: {exc}") from None
            turn = await self._chat.start(self._chat.parse(data), principal_of(scope))
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        await relay_turn(turn, send, receive, self._keepalive, after=0, start=True)


async def relay_turn(
    turn: Turn, send: Send, receive: Receive, keepalive: float, *, after: int, start: bool
) -> None:
    """Write a turn's frames as SSE from event ``after`` on, live to its end."""
    generation = turn.generation
    generation.subscribe()
    watch = ResponseWatch(generation.log, receive, keepalive)
    try:
        headers = [*SSE_HEADERS, (b"x-sluice-stream-id", generation.id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        async for batch in turn_frames(turn, after=after, start=start):
            if watch.disconnected:
                return
            if batch:
                body = b"".join(sse(frame, seq) for seq, frame in batch)
                watch.wrote()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            elif watch.ping_due:
                watch.wrote()
                await send({"type": "http.response.body", "body": PING, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        watch.stop()
        generation.unsubscribe()
