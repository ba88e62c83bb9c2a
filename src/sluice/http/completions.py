"""``POST /v1/chat/completions``: the lean streaming path, in plain ASGI.

Per request: read and validate the body, start (or join) a Generation, wait for its
first event so the HTTP status is decided before the first byte. Per batch of events:
encode and write once. A side task waits for the client's disconnect; keep-alive comments
go out on a timer only while the stream is idle. Nothing per chunk allocates more than
the bytes it writes.
"""

from __future__ import annotations

import asyncio
import time

from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.errors import RequestError, SluiceError
from sluice.events import Event, StreamError, Usage
from sluice.http.asgi import (
    SSE_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    content_length,
    header,
    json_dumps,
    read_body,
    send_error,
    send_json,
)
from sluice.http.gate import principal_of
from sluice.http.watch import ResponseWatch
from sluice.policy.quota import Quota
from sluice.settings import DisconnectPolicy
from sluice.wire.openai_chunks import DONE, ChunkEncoder, Completion
from sluice.wire.openai_request import ChatRequest, parse_chat_request
from sluice.wire.sse import encode_comment

PING = encode_comment("ping")


class ChatCompletions:
    def __init__(
        self,
        engine: Engine,
        quota: Quota,
        *,
        max_body_bytes: int,
        keepalive_seconds: float,
        send_timeout_seconds: float | None = None,
    ) -> None:
        self._engine = engine
        self._quota = quota
        self._limit = max_body_bytes
        self._keepalive = keepalive_seconds
        self._send_timeout = send_timeout_seconds
        self._max_choices = engine.settings.max_choices

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(send, _method_not_allowed())
            return
        try:
            raw = await read_body(receive, self._limit, content_length(scope))
            request = parse_chat_request(raw, max_choices=self._max_choices)
            policy = disconnect_policy(scope)
            self._engine.provider(request.model)  # 404 before any quota is spent
            principal = principal_of(scope)
            ticket = await self._quota.admit(
                principal, request.model, request.messages, request.max_tokens
            )
            try:
                generation = self._engine.start(
                    request,
                    policy=policy,
                    allowance=ticket.allowance,
                    owner=principal.owner,
                    allowed=principal.key.allows if principal.key else None,
                )
            except BaseException:
                self._quota.release(ticket)
                raise
            self._quota.meter(generation, principal, ticket)
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        generation.subscribe()
        watcher = ResponseWatch(generation.log, receive, self._keepalive, self._send_timeout)
        try:
            if request.stream:
                await self._relay(generation, request, watcher, send, ticket.headers)
            else:
                await self._respond(generation, request, watcher, send, ticket.headers)
        except asyncio.CancelledError:
            if not watcher.stalled:
                raise
            # Cut off for reading too slowly: returning mid-response makes the server
            # close the connection.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            watcher.stop()
            generation.unsubscribe()

    async def _relay(
        self,
        generation: Generation,
        request: ChatRequest,
        watcher: ResponseWatch,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        log = generation.log
        events = log.events
        # The status is decided before the first byte: an error that comes first is an
        # HTTP error; after the headers, failures go in-band. (A usage estimate may
        # precede a final error; it decides nothing.)
        while not log.closed and not watcher.disconnected and not watcher.ping_due:
            if any(type(event) is not Usage for event in events):
                break
            await log.wait(len(events))
        if watcher.disconnected:
            return
        first = next((event for event in events if type(event) is not Usage), None)
        if type(first) is StreamError:
            await send_error(send, first)
            return
        headers = [*SSE_HEADERS, (b"x-sluice-stream-id", generation.id.encode()), *extra]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        encoder = ChunkEncoder(
            generation.completion_id,
            generation.created,
            request.model,
            include_usage=request.include_usage,
        )
        relay = _Relay(encoder, send, watcher)
        # Catch up on what is already in the log, then take delivery straight from the
        # generation's task: no wake-up of this task per chunk. A detached generation
        # must not wait for this client, so it gets no sink and is read from the log.
        while relay.seen < len(events):
            await relay.deliver(events[relay.seen :])
        if generation.policy == "cancel":
            generation.attach(relay.deliver)
        try:
            while not log.closed and not watcher.disconnected:
                # One send at a time: no ping while the generation's delivery is writing.
                if watcher.ping_due and watcher.send_started is None:
                    watcher.wrote()
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
                if generation.policy == "cancel":
                    await log.wait_end()
                else:
                    await log.wait(relay.seen)
                    if relay.seen < len(events):
                        await relay.deliver(events[relay.seen :])
        finally:
            generation.detach()
        if watcher.disconnected:
            return
        # Whatever the generation appended after its last delivery (a cancellation's
        # `incomplete` finish, a failure's error record), and a delivery cut short.
        await relay.flush()
        if relay.seen < len(events):
            await relay.deliver(events[relay.seen :])
        failed = bool(events) and type(events[-1]) is StreamError
        # A failed stream never ends with a clean [DONE]: clients must see it failed.
        await send({"type": "http.response.body", "body": b"" if failed else DONE})

    async def _respond(
        self,
        generation: Generation,
        request: ChatRequest,
        watcher: ResponseWatch,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        log = generation.log
        while not log.closed:
            if watcher.disconnected:
                return
            await log.wait_end()
        completion = Completion()
        for event in log.events:
            completion.add(event)
        if completion.error is not None:
            await send_error(send, completion.error)
            return
        body = completion.to_object(
            generation.completion_id, generation.created, request.model, request.n
        )
        await send_json(
            send, 200, json_dumps(body), [(b"x-sluice-stream-id", generation.id.encode()), *extra]
        )


class _Relay:
    """The primary subscriber's delivery: encode a batch, write it with one send."""

    __slots__ = ("_encoder", "_send", "_watcher", "pending", "seen")

    def __init__(self, encoder: ChunkEncoder, send: Send, watcher: ResponseWatch) -> None:
        self._encoder = encoder
        self._send = send
        self._watcher = watcher
        self.seen = 0
        self.pending: tuple[bytes, int] | None = None

    async def deliver(self, batch: list[Event]) -> None:
        watcher = self._watcher
        watcher.wrote()
        # Encoding has effects (a tool call's first delta is marked sent), so the bytes
        # are kept until the send returns: uvicorn waits for the buffer to drain before
        # it writes, and a send cancelled while waiting wrote nothing.
        self.pending = (self._encoder.encode(batch), len(batch))
        await self.flush()

    async def flush(self) -> None:
        """Send what ``deliver`` encoded but could not send (it was cancelled)."""
        if self.pending is None:
            return
        body, count = self.pending
        if body:
            self._watcher.send_started = time.monotonic()
            await self._send({"type": "http.response.body", "body": body, "more_body": True})
            self._watcher.send_started = None
        self.pending = None
        self.seen += count


def disconnect_policy(scope: Scope) -> DisconnectPolicy:
    """``X-Sluice-On-Disconnect: detach`` keeps the answer going without the client (it
    can be resumed at /v1/streams/{id}); the default for this API is ``cancel``."""
    value = header(scope, b"x-sluice-on-disconnect")
    if value is None or value == b"cancel":
        return "cancel"
    if value == b"detach":
        return "detach"
    raise RequestError(
        "X-Sluice-On-Disconnect must be 'cancel' or 'detach'.", param="x-sluice-on-disconnect"
    )


def _method_not_allowed() -> SluiceError:
    return RequestError("Method not allowed; use POST.", status=405, code="method_not_allowed")
