"""``POST /v1/chat/completions``: the lean streaming path, in plain ASGI.

Per request: read and validate the body, start the answer (``http/answers.py``: cache,
admission, generation), and hand it to the relay with the OpenAI chunk encoder; the
status is decided before the first byte (``SSEResponse.decide``). Per batch of events: encode and
write once, from the generation's own task. Nothing per chunk allocates more than the
bytes it writes.
"""

from __future__ import annotations

from sluice.engine.stream import LocalStream
from sluice.errors import RequestError, SluiceError
from sluice.http.answers import ApiEdge
from sluice.http.asgi import (
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
from sluice.http.encoders import OpenAIChunks
from sluice.http.relay import Cut
from sluice.http.transports import SSEResponse
from sluice.settings import DisconnectPolicy
from sluice.wire.openai_chunks import Completion
from sluice.wire.openai_request import parse_chat_request


class ChatCompletions(ApiEdge):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_error(send, _method_not_allowed())
            return
        try:
            raw = await read_body(receive, self._limit, content_length(scope))
            request = parse_chat_request(raw, max_choices=self._engine.settings.max_choices)
            started = await self._start(
                scope, request, policy=disconnect_policy(scope), format="openai"
            )
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        stream = LocalStream(started.generation)
        extra = started.headers
        try:
            async with stream.subscribe():
                if request.stream:
                    await self._relay(stream, receive, send, extra)
                else:
                    await self._respond(stream, request.n, receive, send, extra)
        except Cut:
            return  # returning mid-response makes the server close the connection

    async def _relay(
        self,
        stream: LocalStream,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        response = SSEResponse(send, stream.info.id, extra)
        await self._stream(stream, OpenAIChunks(stream.info), response, receive)

    async def _respond(
        self,
        stream: LocalStream,
        n: int,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        if not await self._ended(stream, receive):
            return
        completion = Completion()
        for event in stream.events:
            completion.add(event)
        if completion.error is not None:
            await send_error(send, completion.error)
            return
        info = stream.info
        body = completion.to_object(info.completion_id, info.created, info.model, n)
        await send_json(
            send, 200, json_dumps(body), [(b"x-sluice-stream-id", info.id.encode()), *extra]
        )


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
