"""Resumable streams: ``GET /v1/streams/{id}`` and ``POST /v1/streams/{id}/cancel``.

A client that lost its connection comes back with the last event id it saw
(``Last-Event-ID`` or ``?after=N``) and gets the events it missed, then the live tail,
then ``[DONE]`` — the same records as the original stream, each with an SSE ``id``. The
finished replay stays available for the engine's retention time. Cancel stops the
generation: the partial answer is kept, its choices finish as ``incomplete``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from sluice.chat.service import Turn
from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.engine.log import EventLog
from sluice.errors import NotFound, RequestError, SluiceError, Unavailable
from sluice.events import Event, Finish, StreamError, Usage
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
from sluice.http.chat import relay_turn
from sluice.http.gate import principal_of
from sluice.http.watch import ResponseWatch
from sluice.owners import may_reach
from sluice.store.shared_log import Entry, RedisEventLogs, StreamMeta
from sluice.wire.chat_frames import ChatFrames, sse
from sluice.wire.errors import stream_error_from
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
        reader = principal_of(scope).owner
        try:
            try:
                generation = self._engine.generation(stream_id, reader=reader)
            except NotFound:
                # Not ours: another instance may own it (shared event log in Redis).
                if not await self._shared(stream_id, reader, action, scope, receive, send):
                    raise
                return
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
        if generation.format == "chat":
            context = generation.context
            turn = Turn(
                generation,
                context.get("conversation_id"),
                context.get("message_id"),
                generation.model,
            )
            await relay_turn(turn, send, receive, self._keepalive, after=after, start=True)
            return
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
            seen = encoder.position_after(events, after)
            number = after + 1
            while True:
                count = len(events)
                if count > seen:
                    body, number = encoder.encode_numbered(events[seen:count], number)
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

    async def _shared(
        self, stream_id: str, reader: str, action: str, scope: Scope, receive: Receive, send: Send
    ) -> bool:
        shared = self._engine.shared
        if shared is None:
            return False
        meta = await shared.meta(stream_id)
        if meta is None or not may_reach(reader, meta.owner):
            return False
        if action == "" and scope["method"] == "GET" and meta.format == "chat":
            await self._replay_shared_chat(shared, meta, _after(scope), receive, send)
        elif action == "" and scope["method"] == "GET":
            await self._replay_shared(shared, meta, _after(scope), receive, send)
        elif action == "cancel" and scope["method"] == "POST":
            await self._cancel_shared(shared, meta, send)
        else:
            raise RequestError("Method not allowed.", status=405, code="method_not_allowed")
        return True

    async def _replay_shared(
        self,
        shared: RedisEventLogs,
        meta: StreamMeta,
        after: int,
        receive: Receive,
        send: Send,
    ) -> None:
        watch = ResponseWatch(EventLog(), receive, self._keepalive)
        try:
            headers = [*SSE_HEADERS, (b"x-sluice-stream-id", meta.id.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            encoder = ChunkEncoder(
                f"chatcmpl-{meta.id}", meta.created, meta.model, include_usage=meta.include_usage
            )
            last: Event | None = None
            skipping = after
            number = after + 1
            async for entry in _following(shared, meta):
                if watch.disconnected:
                    return
                fresh: list[Event] = []
                for event in entry.events:
                    last = event
                    if skipping:
                        # Records the client already has: encoded (the encoder's state
                        # must be as if sent) but not sent.
                        if encoder.encode_one(event):
                            skipping -= 1
                        continue
                    fresh.append(event)
                if fresh:
                    body, number = encoder.encode_numbered(fresh, number)
                    watch.wrote()
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                elif watch.ping_due:
                    watch.wrote()
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
                if entry.end:
                    break
            failed = type(last) is StreamError
            await send({"type": "http.response.body", "body": b"" if failed else DONE})
        finally:
            watch.stop()

    async def _replay_shared_chat(
        self,
        shared: RedisEventLogs,
        meta: StreamMeta,
        after: int,
        receive: Receive,
        send: Send,
    ) -> None:
        """A /chat stream owned by another instance, in the chat protocol. Its done frame
        has no timings: those live in the owner's memory (and in the stored message)."""
        frames = ChatFrames(
            meta.id, meta.conversation_id or None, meta.message_id or None, meta.model
        )
        watch = ResponseWatch(EventLog(), receive, self._keepalive)
        try:
            headers = [*SSE_HEADERS, (b"x-sluice-stream-id", meta.id.encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(
                {"type": "http.response.body", "body": sse(frames.start()), "more_body": True}
            )
            last = 0
            async for entry in _following(shared, meta):
                if watch.disconnected:
                    return
                parts = []
                for seq, event in enumerate(entry.events, entry.first):
                    frame = frames.frame(event)  # earlier events still rebuild the text
                    last = seq
                    if frame is not None and seq > after:
                        parts.append(sse(frame, seq))
                if parts:
                    watch.wrote()
                    body = b"".join(parts)
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                elif watch.ping_due:
                    watch.wrote()
                    await send({"type": "http.response.body", "body": PING, "more_body": True})
                if entry.end:
                    break
            tail = b"" if frames.failed else sse(frames.done(None), last)
            await send({"type": "http.response.body", "body": tail})
        finally:
            watch.stop()

    async def _cancel_shared(self, shared: RedisEventLogs, meta: StreamMeta, send: Send) -> None:
        await shared.request_cancel(meta.id)
        events: list[Event] = []
        try:
            async with asyncio.timeout(10):
                # A dead instance's stream ends at once, as interrupted (no lease).
                async for entry in shared.entries(meta, block_ms=200, quiet_seconds=0):
                    events += entry.events
                    if entry.end:
                        break
        except TimeoutError:
            pass
        usage = next((e for e in reversed(events) if isinstance(e, Usage)), None)
        finishes = [e.reason for e in events if isinstance(e, Finish)]
        status = "cancelled" if "incomplete" in finishes else "completed"
        if any(isinstance(e, StreamError) for e in events):
            status = "failed"
        await send_json(send, 200, json_dumps(_state(meta.id, meta.model, status, True, usage)))

    async def _cancel(self, generation: Generation, send: Send) -> None:
        was_running = not generation.done
        generation.cancel()
        await generation.wait()
        body = _state(
            generation.id, generation.model, generation.state.value, was_running, generation.usage
        )
        await send_json(send, 200, json_dumps(body))


async def _following(shared: RedisEventLogs, meta: StreamMeta) -> AsyncIterator[Entry]:
    """A shared stream's entries for a response already under way: Redis going away
    mid-replay is an in-band error record (retryable), not a broken connection."""
    position = 1
    try:
        async for entry in shared.entries(meta):
            position = entry.first + len(entry.events)
            yield entry
    except Unavailable as exc:
        yield Entry(position, [stream_error_from(exc)], True)


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
