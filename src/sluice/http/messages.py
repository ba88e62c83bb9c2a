"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: the Anthropic Messages
API, in plain ASGI, on the same engine as chat completions.

Per request: read the body, turn it into a ChatRequest (``wire/anthropic_request.py``),
start the answer through the one admission path (``http/answers.py``: cache, key,
limits, budget; format ``messages``), and hand it to the relay with ``MessagesEvents``.
The status is decided before the first byte, as on ``/v1/chat/completions``; after it a
failure is an ``error`` event. A client leaving cancels the upstream call (or not, with
``X-Sluice-On-Disconnect: detach``); ``GET /v1/streams/{id}`` resumes the stream in
this format.

Errors are the gateway's one mapping (``http/asgi.error_response``: status, headers),
with the body reshaped as Anthropic's (``anthropic_errors``, which also answers for the
door: a refused key is a 401 ``authentication_error``). ``x-api-key`` is a key like a
Bearer token (``http/gate.py``); ``anthropic-version`` is accepted and not required.
"""

from __future__ import annotations

import orjson

from sluice.engine.stream import LocalStream, Stream, StreamInfo
from sluice.errors import PermissionDenied, RequestError, SluiceError
from sluice.events import Event, StreamError
from sluice.http.answers import ApiEdge
from sluice.http.asgi import (
    JSON,
    ClientDisconnected,
    Message,
    Receive,
    Scope,
    Send,
    content_length,
    json_dumps,
    read_body,
    send_error,
    send_json,
)
from sluice.http.completions import disconnect_policy
from sluice.http.encoders import failed
from sluice.http.gate import principal_of
from sluice.http.relay import Cut
from sluice.http.transports import SSEResponse
from sluice.request_ids import current_request_id
from sluice.tokens import estimate_prompt_tokens, estimate_text_tokens
from sluice.wire.anthropic_errors import reshape
from sluice.wire.anthropic_events import (
    PING,
    MessagesSSE,
    error_record,
    last_usage,
    message_id,
    message_object,
    sse,
)
from sluice.wire.anthropic_request import parse_count_tokens, parse_messages_request

PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
PATHS = (PATH, COUNT_TOKENS_PATH)


class MessagesEvents:
    """The relay's encoder for the Messages stream. ``numbered``: each record carries
    its number as the SSE ``id`` (the resume endpoint); offsets count records."""

    __slots__ = ("_sse",)

    def __init__(self, info: StreamInfo, *, numbered: bool = False) -> None:
        self._sse = MessagesSSE(message_id(info.id), info.model, numbered=numbered)

    def resume(self, after: int) -> None:
        self._sse.skip = after

    def opening(self) -> bytes | None:
        # message_start waits for the first event: the status is not decided yet.
        return None

    def encode(self, events: list[Event], first: int) -> bytes | None:
        return self._sse.encode(events) or None

    def closing(self, stream: Stream) -> bytes | None:
        # A failed stream ended with its error event: no message_stop after it.
        return None if failed(stream) else self._sse.end(last_usage(stream.events))

    def interruption(self, error: StreamError) -> bytes:
        return sse(error_record(error))


async def resumed_messages(info: StreamInfo, *, numbered: bool, after: int) -> MessagesEvents:
    """The encoder ``GET /v1/streams/{id}`` writes a ``messages`` stream with: ``after``
    is how many records the client has (-1 or 0: none)."""
    encoder = MessagesEvents(info, numbered=numbered)
    if after > 0:
        encoder.resume(after)
    return encoder


class MessagesResponse(SSEResponse):
    """The event-stream response, with Anthropic's ``ping`` event as the keep-alive."""

    __slots__ = ()

    async def ping(self) -> None:
        await self.write(PING)


def anthropic_errors(send: Send) -> Send:
    """``send`` for a Messages route: an error answer (a JSON body with a 4xx/5xx
    status, written by ``send_error``) gets Anthropic's body; every response gets
    ``request-id``, Anthropic's name for ``x-request-id``. Once a response that is not
    an error has started, messages pass straight through."""
    held: Message | None = None
    through = False

    async def reshaping(message: Message) -> None:
        nonlocal held, through
        if through:
            await send(message)
            return
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            if (request_id := current_request_id()) is not None:
                headers.append((b"request-id", request_id.encode()))
            message["headers"] = headers
            if message["status"] >= 400 and (b"content-type", JSON) in headers:
                held = message  # the body decides; error bodies come in one piece
                return
            through = True
            await send(message)
            return
        if held is not None and message["type"] == "http.response.body":
            start, held, through = held, None, True
            body = reshape(start["status"], message.get("body", b""))
            start["headers"] = [
                (name, str(len(body)).encode() if name == b"content-length" else value)
                for name, value in start["headers"]
            ]
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return reshaping


class Messages(ApiEdge):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(
                send,
                RequestError(
                    "Method not allowed; use POST.", status=405, code="method_not_allowed"
                ),
            )
            return
        if scope["path"] == COUNT_TOKENS_PATH:
            await self._count_tokens(scope, receive, send)
            return
        try:
            raw = await read_body(receive, self._limit, content_length(scope))
            request = parse_messages_request(raw)
            started = await self._start(
                scope, request, policy=disconnect_policy(scope), format="messages"
            )
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        stream = LocalStream(started.generation)
        try:
            async with stream.subscribe():
                if request.stream:
                    await self._relay(stream, receive, send, started.headers)
                else:
                    await self._respond(stream, receive, send, started.headers)
        except Cut:
            return  # returning mid-response makes the server close the connection

    async def _relay(
        self, stream: LocalStream, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        response = MessagesResponse(send, stream.info.id, extra)
        await self._stream(stream, MessagesEvents(stream.info), response, receive)

    async def _respond(
        self, stream: LocalStream, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]
    ) -> None:
        if not await self._ended(stream, receive):
            return
        events = stream.events
        error = next((event for event in events if type(event) is StreamError), None)
        if error is not None:
            await send_error(send, error)
            return
        info = stream.info
        body = message_object(events, message_id(info.id), info.model)
        await send_json(
            send, 200, json_dumps(body), [(b"x-sluice-stream-id", info.id.encode()), *extra]
        )

    async def _count_tokens(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An estimate (``sluice/tokens.py``, what limits and budgets reserve by), not the
        model's tokenizer: nothing is sent upstream, nothing is spent."""
        try:
            chat = parse_count_tokens(await read_body(receive, self._limit, content_length(scope)))
            model = chat["model"]
            self._engine.provider(model)  # 404 for a model that is not here
            key = principal_of(scope).key
            if key is not None and not key.allows(model):
                raise PermissionDenied(
                    f"This API key may not use the model `{model}`.", param="model"
                )
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        tokens = estimate_prompt_tokens(chat["messages"])
        if chat.get("tools"):
            tokens += estimate_text_tokens(orjson.dumps(chat["tools"]).decode())
        await send_json(send, 200, json_dumps({"input_tokens": tokens}))
