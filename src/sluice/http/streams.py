"""Resumable streams: ``GET /v1/streams/{id}`` and ``POST /v1/streams/{id}/cancel``.

A client that lost its connection comes back with the last event id it saw
(``Last-Event-ID`` or ``?after=N``) and gets the events it missed, then the live tail,
then ``[DONE]`` — the same records as the original stream, each with an SSE ``id``. The
finished replay stays available for the engine's retention time. Cancel stops the
generation: the partial answer is kept, its choices finish as ``incomplete``.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.errors import RequestError, SluiceError
from sluice.events import StreamError
from sluice.http.asgi import (
    SSE_HEADERS,
    Receive,
    Scope,
    Send,
    header,
    json_dumps,
    send_error,
    send_json,
)
from sluice.http.watch import ResponseWatch
from sluice.wire.openai_chunks import DONE, ChunkEncoder
from sluice.wire.sse import encode_comment

PREFIX = "/v1/streams/"
PING = encode_comment("ping")


class Streams:
    def __init__(self, engine: Engine, *, keepalive_seconds: float) -> None:
        self._engine = engine
        self._keepalive = keepalive_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rest = scope["path"][len(PREFIX) :]
        stream_id, _, action = rest.partition("/")
        try:
            generation = self._engine.generation(stream_id)
            if action == "" and scope["method"] == "GET":
                after = _after(scope)
                await self._replay(generation, after, receive, send)
            elif action == "cancel" and scope["method"] == "POST":
                await self._cancel(generation, send)
            elif action in ("", "cancel"):
                raise RequestError("Method not allowed.", status=405, code="method_not_allowed")
            else:
                raise RequestError(f"No such stream action {action!r}.", status=404)
        except SluiceError as exc:
            await send_error(send, exc)

    async def _replay(
        self, generation: Generation, after: int, receive: Receive, send: Send
    ) -> None:
        log = generation.log
        events = log.events
        generation.subscribe()
        watch = ResponseWatch(log, receive, self._keepalive)
        try:
            headers = [*SSE_HEADERS, (b"x-sluice-stream-id", generation.id.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            request = generation.request
            encoder = ChunkEncoder(
                generation.completion_id,
                generation.created,
                request.model,
                include_usage=request.include_usage,
            )
            seen = min(after, len(events))
            while True:
                count = len(events)
                if count > seen:
                    body = encoder.encode_numbered(events[seen:count], seen + 1)
                    seen = count
                    watch.wrote()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                elif log.closed or watch.disconnected:
                    break
                elif watch.ping_due:
                    watch.wrote()
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
                else:
                    await log.wait(seen)
            if watch.disconnected:
                return
            failed = bool(events) and type(events[-1]) is StreamError
            await send({"type": "http.response.body", "body": b"" if failed else DONE})
        finally:
            watch.stop()
            generation.unsubscribe()

    async def _cancel(self, generation: Generation, send: Send) -> None:
        was_running = not generation.done
        generation.cancel()
        await generation.wait()
        usage = generation.usage
        body = {
            "id": generation.id,
            "object": "stream",
            "status": generation.state.value,
            "cancelled": was_running,
            "model": generation.model,
            "usage": None
            if usage is None
            else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
        }
        await send_json(send, 200, json_dumps(body))


def _after(scope: Scope) -> int:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    raw = query["after"][0] if "after" in query else None
    if raw is None:
        last = header(scope, b"last-event-id")
        raw = last.decode("latin-1") if last is not None else "0"
    if not raw.isdigit():
        raise RequestError(
            "The last event id ('after' or Last-Event-ID) must be a non-negative integer.",
            param="after",
        )
    return int(raw)
