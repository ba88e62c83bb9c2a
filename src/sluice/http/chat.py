"""``POST /chat``: one chat turn as Server-Sent Events in the app protocol.

The turn is validated and started (conversation found or created, question stored) before
the response begins; from then on everything — tokens, usage, errors — is an event. The
generation is detached: a client that drops loses nothing and comes back through
``GET /v1/streams/{id}`` (same events, same ids).
"""

from __future__ import annotations

import orjson

from sluice.chat.service import ChatService
from sluice.engine.stream import LocalStream, StreamInfo
from sluice.errors import RequestError, SluiceError
from sluice.http.asgi import (
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    content_length,
    read_body,
    send_error,
)
from sluice.http.cache_headers import cache_control, paced_replay
from sluice.http.encoders import ChatEvents, ChatSocketFrames
from sluice.http.gate import principal_of
from sluice.http.relay import Cut, relay
from sluice.http.transports import SSEResponse
from sluice.telemetry.record import current as current_record


class ContinuedEvents(ChatEvents):
    """A turn's SSE events; a continue turn's done frame has the answer's full text (its
    earlier text, then the new), as the stored message does."""

    def __init__(self, info: StreamInfo, prefix: str = "") -> None:
        super().__init__(info, start=True)
        if prefix:
            self._frames.text.append(prefix)


class ContinuedFrames(ChatSocketFrames):
    """``ContinuedEvents`` for the WebSocket."""

    def __init__(self, info: StreamInfo, prefix: str = "") -> None:
        super().__init__(info, start=True)
        if prefix:
            self._frames.text.append(prefix)


class ChatEndpoint:
    def __init__(
        self,
        chat: ChatService,
        *,
        max_body_bytes: int,
        keepalive_seconds: float,
        send_timeout_seconds: float | None = None,
    ):
        self._chat = chat
        self._limit = max_body_bytes
        self._keepalive = keepalive_seconds
        self._send_timeout = send_timeout_seconds

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
            turn = await self._chat.start(
                self._chat.parse(data),
                principal_of(scope),
                cache_control(scope),
                paced=paced_replay(scope),
            )
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        record = current_record()
        if record is not None:
            record.model, record.generation = turn.model, turn.generation
            if turn.decision is not None:
                record.cache, record.coalesced = turn.decision.outcome, turn.decision.coalesced
        stream = LocalStream(turn.generation)
        response = SSEResponse(send, stream.info.id, turn.headers)
        await response.start()
        try:
            async with stream.subscribe():
                done = await relay(
                    stream,
                    ContinuedEvents(stream.info, turn.prefix),
                    response,
                    keepalive=self._keepalive,
                    send_timeout=self._send_timeout,
                    receive=receive,
                )
        except Cut:
            return  # returning mid-response makes the server close the connection
        if done:
            await response.end()
