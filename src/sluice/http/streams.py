"""Resumable streams: ``GET /v1/streams/{id}`` and ``POST /v1/streams/{id}/cancel``.

A client that lost its connection comes back with the last event id it saw
(``Last-Event-ID`` or ``?after=N``) and gets the events it missed, then the live tail,
then ``[DONE]`` — the same records as the original stream, each with an SSE ``id``, in
the protocol the stream was started with. The stream may run here or on another
instance (the shared log in Redis): ``Engine.open_stream`` hands out either, and the
relay writes both. Cancel stops the generation wherever it runs: the partial answer is
kept, its choices finish as ``incomplete``. Another principal's stream is "not found".
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from sluice.engine.engine import Engine
from sluice.engine.stream import LocalStream, Stream
from sluice.errors import RequestError, ShuttingDown, SluiceError
from sluice.events import Finish, StreamError, Usage
from sluice.http.asgi import Receive, Scope, Send, header, json_dumps, send_error, send_json
from sluice.http.encoders import ChatEvents, OpenAIChunks
from sluice.http.gate import principal_of
from sluice.http.relay import Cut, Encoder, relay
from sluice.http.transports import SSEResponse

PREFIX = "/v1/streams/"

#: Builds the encoder a resumed stream of one API is written with (its SSE ``id``s
#: numbered): for the APIs whose encoder needs more than the stream's info.
EncoderFactory = Callable[..., Awaitable[Encoder[Any]]]
#: How long a cancel waits for the stream's end to report its final state.
CANCEL_WAIT_SECONDS = 10.0


class Streams:
    def __init__(
        self,
        engine: Engine,
        *,
        keepalive_seconds: float,
        send_timeout_seconds: float | None = None,
        stopped: asyncio.Event | None = None,
        encoders: Mapping[str, EncoderFactory] | None = None,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        self._engine = engine
        self._draining = draining
        self._encoders = dict(encoders or {})
        self._keepalive = keepalive_seconds
        self._send_timeout = send_timeout_seconds
        self._stopped = stopped
        #: Relays of streams running on another instance: the drain waits for them.
        self.remote = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rest = scope["path"][len(PREFIX) :]
        stream_id, _, action = rest.partition("/")
        method = scope["method"]
        try:
            stream = await self._engine.open_stream(stream_id, reader=principal_of(scope).owner)
            if (
                self._draining is not None
                and self._draining()
                and not isinstance(stream, LocalStream)
            ):
                # Stopping: another instance's stream is read there, not here (or a
                # steady stream of resumes would hold this drain to its deadline).
                raise ShuttingDown("The server is shutting down; resume elsewhere.", retry_after=1)
            if action not in ("", "cancel"):
                raise RequestError(f"No such stream action {action!r}.", status=404)
            if (action, method) not in (("", "GET"), ("cancel", "POST")):
                raise RequestError("Method not allowed.", status=405, code="method_not_allowed")
            if action == "":
                await self._replay(stream, _after(scope) if resumed(scope) else None, receive, send)
            else:
                await self._cancel(stream, send)
        except SluiceError as exc:
            await send_error(send, exc)

    async def _replay(
        self, stream: Stream, after: int | None, receive: Receive, send: Send
    ) -> None:
        """``after``: the last record the client has (None: it has nothing)."""
        info = stream.info
        factory = self._encoders.get(info.format)
        encoder: Encoder[Any]
        if factory is not None:
            # Its own count (the Responses API's sequence numbers start at 0): the
            # encoder skips what the client has; the relay replays from the start.
            encoder = await factory(info, numbered=True, after=-1 if after is None else after)
            after = None
        elif info.format == "chat":
            encoder = ChatEvents(info, start=True)
        else:
            encoder = OpenAIChunks(info, numbered=True)
        response = SSEResponse(send, info.id)
        await response.start()
        remote = not isinstance(stream, LocalStream)
        self.remote += remote
        try:
            async with stream.subscribe():
                done = await relay(
                    stream,
                    encoder,
                    response,
                    after=after or 0,
                    keepalive=self._keepalive,
                    send_timeout=self._send_timeout,
                    receive=receive,
                    stopped=self._stopped,
                )
        except Cut:
            return  # returning mid-response makes the server close the connection
        finally:
            self.remote -= remote
        if done:
            await response.end()

    async def _cancel(self, stream: Stream, send: Send) -> None:
        async with stream.subscribe():
            await stream.cancel()
            try:
                async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                    await stream.wait_end()
            except TimeoutError:
                pass
        events = stream.events
        usage = next((e for e in reversed(events) if type(e) is Usage), None)
        if any(type(e) is StreamError for e in events):
            status = "failed"
        elif any(isinstance(e, Finish) and e.reason == "incomplete" for e in events):
            status = "cancelled"
        else:
            status = "completed"
        body = _state(stream.info.id, stream.info.model, status, status == "cancelled", usage)
        await send_json(send, 200, json_dumps(body))


def _state(
    stream_id: str, model: str, status: str, cancelled: bool, usage: Usage | None
) -> dict[str, Any]:
    return {
        "id": stream_id,
        "object": "stream",
        "status": status,
        "cancelled": cancelled,
        "model": model,
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


def resumed(scope: Scope) -> bool:
    """Whether the client said where it is (``after`` or Last-Event-ID)."""
    query = scope.get("query_string", b"")
    return b"after=" in query or header(scope, b"last-event-id") is not None


def _after(scope: Scope) -> int:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    raw = query["after"][0] if "after" in query else None
    if raw is None:
        last = header(scope, b"last-event-id")
        raw = last.decode("latin-1") if last is not None else "0"
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise RequestError(
            "The last event id ('after' or Last-Event-ID) must be a non-negative integer.",
            param="after",
        )
    return int(raw)
