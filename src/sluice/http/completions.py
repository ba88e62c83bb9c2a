"""``POST /v1/chat/completions``: the lean streaming path, in plain ASGI.

Per request: read and validate the body, ask the response cache where the answer comes
from (a cached copy, an identical answer in flight, or the model), admit it (key, limits,
budget), start a Generation, and hand it to the relay with the OpenAI chunk encoder; the
status is
decided before the first byte (``SSEResponse.decide``). Per batch of events: encode and
write once, from the generation's own task. Nothing per chunk allocates more than the
bytes it writes.
"""

from __future__ import annotations

from sluice.cache.responses import ResponseCache
from sluice.engine.engine import Engine
from sluice.engine.stream import LocalStream
from sluice.errors import RequestError, SluiceError
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
from sluice.http.cache_headers import cache_control, paced_replay
from sluice.http.encoders import OpenAIChunks
from sluice.http.gate import principal_of
from sluice.http.relay import Cut, disconnected, race, relay
from sluice.http.transports import SSEResponse
from sluice.policy.quota import Quota
from sluice.settings import DisconnectPolicy
from sluice.telemetry.record import current as current_record
from sluice.wire.openai_chunks import Completion
from sluice.wire.openai_request import parse_chat_request


class ChatCompletions:
    def __init__(
        self,
        engine: Engine,
        quota: Quota,
        cache: ResponseCache,
        *,
        max_body_bytes: int,
        keepalive_seconds: float,
        send_timeout_seconds: float | None = None,
    ) -> None:
        self._engine = engine
        self._quota = quota
        self._cache = cache
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
            record = current_record()
            if record is not None:
                record.model = request.model  # a configured model: safe to log and label
            principal = principal_of(scope)
            cache = self._cache
            plan = cache.plan(request, principal.owner, cache_control(scope))
            allowed = principal.key.allows if principal.key else None
            decision = await cache.decide(request, plan, paced=paced_replay(scope), allowed=allowed)
            try:
                ticket = await self._quota.admit(
                    principal,
                    request.model,
                    request.messages,
                    request.max_tokens,
                    spends=not decision.costs_nothing,
                )
                try:
                    generation = self._engine.start(
                        request,
                        policy=policy,
                        allowance=ticket.allowance,
                        owner=principal.owner,
                        allowed=allowed,
                        on_finish=[self._quota.finisher(ticket), *cache.finishers(decision)],
                        source=decision.source,
                    )
                except BaseException:
                    self._quota.release(ticket)
                    raise
            except BaseException:
                decision.release()
                raise
            cache.started(generation, decision)
            self._quota.meter(generation, principal, ticket)
            if record is not None:
                record.generation = generation
                record.cache, record.coalesced = decision.outcome, decision.coalesced
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        stream = LocalStream(generation)
        extra = [*ticket.headers, *decision.headers]
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

        async def decide() -> bool:
            return await response.decide(stream, self._keepalive)

        done = await relay(
            stream,
            OpenAIChunks(stream.info),
            response,
            keepalive=self._keepalive,
            send_timeout=self._send_timeout,
            receive=receive,
            decide=decide,
        )
        if done:
            await response.end()

    async def _respond(
        self,
        stream: LocalStream,
        n: int,
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        if await race([stream.wait_end(), disconnected(receive)]) != 0:
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
