"""The Responses API: ``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``,
``POST /v1/responses/{id}/cancel``, in plain ASGI.

A Responses request is translated to chat completions (``wire.responses_request``) and
runs on the same engine as every other answer — cache, limits, budgets, retries,
fallbacks, cancellation, resume — through the shared admission path
(``http/answers.py``); only the encoder differs (``ResponsesRecords``). The response id
is ``resp_`` + the stream id, so ``GET /v1/responses/{id}?stream=true&starting_after=N``
and ``/v1/streams/{stream id}`` resume the same stream.

Stored responses (``store``, on by default) are kept per owner in the ``responses``
table: written when the answer starts and again when it ends, off the request path.
``previous_response_id`` continues the conversation a stored response ended. Another
principal's response is "not found", like one that never was.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import parse_qs

from sluice.cache.responses import ResponseCache
from sluice.engine.engine import Engine
from sluice.engine.generation import Generation
from sluice.engine.stream import LocalStream, Stream, StreamInfo
from sluice.errors import NotFound, RequestError, SluiceError
from sluice.http.answers import ApiEdge, EdgeLimits
from sluice.http.asgi import (
    ClientDisconnected,
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
from sluice.http.encoders import ResponsesRecords
from sluice.http.gate import principal_of
from sluice.http.relay import Cut, relay
from sluice.http.transports import SSEResponse
from sluice.owners import may_reach
from sluice.policy.quota import Quota
from sluice.store.responses import ResponseStore, StoredResponse
from sluice.tokens import estimate_prompt_tokens
from sluice.wire.openai_request import chat_request_from_body
from sluice.wire.responses_events import (
    ResponseWriter,
    response_id,
    response_object,
    stream_id_of,
)
from sluice.wire.responses_request import (
    DEFAULT_ECHO,
    ResponsesRequest,
    output_messages,
    parse_responses_request,
)

logger = logging.getLogger("sluice.http")

PREFIX = "/v1/responses"
#: How long a cancel waits for the stream's end to report its final state.
CANCEL_WAIT_SECONDS = 10.0
#: Waits between tries of a stored response's write (the last try comes after their sum).
_SAVE_RETRIES = (0.5, 1.0, 2.0)


class Responses(ApiEdge):
    def __init__(
        self,
        engine: Engine,
        quota: Quota,
        cache: ResponseCache,
        limits: EdgeLimits,
        store: ResponseStore,
    ) -> None:
        super().__init__(engine, quota, cache, limits)
        self._store = store
        #: Writes of stored responses still running (waited for at shutdown).
        self._saves: set[asyncio.Task[None]] = set()
        #: The latest write of each stored response still in flight, by id: the next
        #: write, and every read of that id here, waits for it (a client continuing
        #: or reading a response it was just sent must find it stored).
        self._pending: dict[str, asyncio.Task[None]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        rest = scope["path"][len(PREFIX) :]
        method = scope["method"]
        try:
            if rest in ("", "/"):
                if method != "POST":
                    raise _method_not_allowed("POST")
                await self._create(scope, receive, send)
                return
            target, _, action = rest[1:].partition("/")
            if action == "cancel":
                if method != "POST":
                    raise _method_not_allowed("POST")
                await self._cancel(scope, target, send)
            elif action or method not in ("GET", "DELETE"):
                raise RequestError(f"Invalid URL ({method} {scope['path'][:120]})", status=404)
            elif method == "GET":
                await self._retrieve(scope, target, receive, send)
            else:
                await self._delete(scope, target, send)
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
        except Cut:
            return  # returning mid-response makes the server close the connection

    # -- create -------------------------------------------------------------

    async def _create(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive, self._limit, content_length(scope))
        request = parse_responses_request(raw)
        owner = principal_of(scope).owner
        history = await self._history(request, owner)
        chat = chat_request_from_body(request.chat_body(history), max_choices=1)
        limit = self._engine.config(chat.model).context_tokens  # 404 for an unknown model
        if history and (tokens := estimate_prompt_tokens(chat.messages)) > limit:
            # A chain of responses grows with every turn: it ends at the model's context
            # (``context_tokens``), as the model itself would refuse it.
            raise RequestError(
                f"This conversation is about {tokens} tokens with the new input, over the "
                f"{limit} tokens of `{chat.model}`'s context; start a new one without "
                "previous_response_id.",
                param="previous_response_id",
                code="context_length_exceeded",
            )

        admitted: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

        def finished(generation: Generation) -> None:
            if request.store and admitted:
                self._save_final(generation, *admitted[0])

        started = await self._start(
            scope, chat, policy=disconnect_policy(scope), format="responses", on_finish=[finished]
        )
        # What is repeated and stored is what the model was sent: guardrails' masks on.
        sent = started.request.messages
        echo = request.echo
        if request.instructions:
            echo = {**echo, "instructions": sent[0]["content"]}
            sent = sent[1:]
        admitted.append((echo, sent))
        generation = started.generation
        info = generation.info
        writer = ResponseWriter(response_id(info.id), info.created, info.model, echo)
        if request.store:
            self._save(_stored(info, writer.response("in_progress"), "in_progress"), first=True)
        stream = LocalStream(generation)
        async with stream.subscribe():
            if request.stream:
                response = SSEResponse(send, info.id, started.headers)
                await self._stream(stream, ResponsesRecords(writer), response, receive)
            else:
                await self._respond(stream, request.store, echo, receive, send, started.headers)

    async def _history(self, request: ResponsesRequest, owner: str) -> list[dict[str, Any]]:
        previous = request.previous_response_id
        if previous is None:
            return []
        stored = await self._read(previous)
        if stored is None or not may_reach(owner, stored.owner) or stored.history is None:
            raise NotFound(
                f"Previous response with id '{previous}' not found.",
                param="previous_response_id",
            )
        return stored.history

    async def _respond(
        self,
        stream: LocalStream,
        store: bool,
        echo: dict[str, Any],
        receive: Receive,
        send: Send,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        if not await self._ended(stream, receive):
            return
        info = stream.info
        body = response_object(response_id(info.id), info.created, info.model, echo, stream.events)
        if body["status"] == "failed":
            error = stream.events[-1]
            await send_error(send, error)  # type: ignore[arg-type]
            return
        if store:
            await self._read(body["id"])  # stored before the client can ask for it again
        await send_json(
            send, 200, json_dumps(body), [(b"x-sluice-stream-id", info.id.encode()), *extra]
        )

    # -- stored responses ---------------------------------------------------

    def _save(self, stored: StoredResponse, *, first: bool = False) -> None:
        """Write ``stored`` off the request path, after the write before it. The first
        write inserts the row; later ones only update it, so a response deleted while
        it ran stays deleted."""
        before = self._pending.get(stored.id)
        task = asyncio.get_running_loop().create_task(self._write(stored, before, first))
        self._pending[stored.id] = task
        self._saves.add(task)

        def done(_: asyncio.Task[None]) -> None:
            self._saves.discard(task)
            if self._pending.get(stored.id) is task:
                del self._pending[stored.id]

        task.add_done_callback(done)

    def _save_final(
        self, generation: Generation, echo: dict[str, Any], sent: list[dict[str, Any]]
    ) -> None:
        """``sent``: the conversation the model was sent, without the instructions."""
        info = generation.info
        body = response_object(
            response_id(info.id), info.created, info.model, echo, generation.log.events
        )
        status = body["status"]
        conversation = None
        if status != "failed":
            conversation = [*sent, *output_messages(body["output"])]
        self._save(_stored(info, body, status, conversation))

    async def _write(
        self, stored: StoredResponse, before: asyncio.Task[None] | None, first: bool
    ) -> None:
        if before is not None:
            with contextlib.suppress(Exception):
                await before
        for wait in (*_SAVE_RETRIES, None):
            try:
                if first:
                    await self._store.save(stored)
                else:
                    await self._store.update(stored)
                return
            except Exception as exc:  # any driver error: the store is not usable now
                if wait is None:
                    logger.error("could not store response %s: %s", stored.id, exc)
                    return
                await asyncio.sleep(wait)

    async def _read(self, target: str) -> StoredResponse | None:
        """The stored response ``target``, once a write of it still running here is done."""
        pending = self._pending.get(target)
        if pending is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(pending)
        return await self._store.get(target)

    async def aclose(self) -> None:
        """Let the stored responses still being written finish (bounded)."""
        if self._saves:
            await asyncio.wait(set(self._saves), timeout=sum(_SAVE_RETRIES) + 2)

    # -- one response -------------------------------------------------------

    async def _stored(self, scope: Scope, target: str) -> StoredResponse:
        stored = await self._read(target) if stream_id_of(target) else None
        if stored is None or not may_reach(principal_of(scope).owner, stored.owner):
            raise _not_found(target)
        return stored

    async def _retrieve(self, scope: Scope, target: str, receive: Receive, send: Send) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("stream", ["false"])[0] == "true":
            await self._resume(scope, target, _starting_after(query), receive, send)
            return
        stored = await self._stored(scope, target)
        body = stored.body
        if stored.status == "in_progress":
            live = await self._live(scope, target)
            if live is not None:
                info = live.info
                body = response_object(target, info.created, info.model, _echo(body), live.events)
            else:
                body = _orphaned(body)
        await send_json(send, 200, json_dumps(body))

    async def _live(self, scope: Scope, target: str) -> Stream | None:
        stream_id = stream_id_of(target)
        if stream_id is None:
            return None
        try:
            stream = await self._engine.open_stream(stream_id, reader=principal_of(scope).owner)
        except NotFound:
            return None
        # Another API's stream is not a response, whoever started it.
        return stream if stream.info.format == "responses" else None

    async def _resume(
        self, scope: Scope, target: str, after: int, receive: Receive, send: Send
    ) -> None:
        stream = await self._live(scope, target)
        if stream is None:
            raise _not_found(target)
        encoder = await self.encoder(stream.info, after=after)
        response = SSEResponse(send, stream.info.id)
        await response.start()
        async with stream.subscribe():
            done = await relay(
                stream,
                encoder,
                response,
                keepalive=self._keepalive,
                send_timeout=self._send_timeout,
                receive=receive,
            )
        if done:
            await response.end()

    async def encoder(
        self, info: StreamInfo, *, after: int = -1, numbered: bool = False
    ) -> ResponsesRecords:
        """The encoder a resumed Responses stream is written with: the request's
        settings come from the stored response (defaults if it was not stored)."""
        echo = await self._echo_of(info)
        writer = ResponseWriter(response_id(info.id), info.created, info.model, echo)
        return ResponsesRecords(writer, after=after, numbered=numbered)

    async def _echo_of(self, info: StreamInfo) -> dict[str, Any]:
        with contextlib.suppress(Exception):  # a store outage costs the echo, not the stream
            stored = await self._store.get(response_id(info.id))
            if stored is not None:
                return _echo(stored.body)
        return DEFAULT_ECHO

    async def _delete(self, scope: Scope, target: str, send: Send) -> None:
        await self._stored(scope, target)
        await self._store.delete(target)
        await send_json(
            send, 200, json_dumps({"id": target, "object": "response", "deleted": True})
        )

    async def _cancel(self, scope: Scope, target: str, send: Send) -> None:
        stream = await self._live(scope, target)
        if stream is None:
            stored = await self._stored(scope, target)
            await send_json(send, 200, json_dumps(stored.body))
            return
        async with stream.subscribe():
            await stream.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_WAIT_SECONDS):
                    await stream.wait_end()
        info = stream.info
        echo = await self._echo_of(info)
        body = response_object(target, info.created, info.model, echo, stream.events)
        await send_json(send, 200, json_dumps(body))


def _stored(
    info: StreamInfo,
    body: dict[str, Any],
    status: str,
    history: list[dict[str, Any]] | None = None,
) -> StoredResponse:
    return StoredResponse(
        id=response_id(info.id),
        owner=info.owner,
        model=info.model,
        status=status,
        created_at=float(info.created),
        body=body,
        history=history,
    )


def _orphaned(body: dict[str, Any]) -> dict[str, Any]:
    """A stored response still marked in progress whose stream is gone (its instance
    stopped mid-answer): it will never finish."""
    return {
        **body,
        "status": "failed",
        "error": {
            "code": "server_error",
            "message": "The response was interrupted: the gateway stopped while writing it.",
        },
    }


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    """A stored Response object's request settings."""
    return {name: body.get(name, default) for name, default in DEFAULT_ECHO.items()}


def _starting_after(query: dict[str, list[str]]) -> int:
    raw = query.get("starting_after", ["-1"])[0]
    if raw != "-1" and (not (raw.isascii() and raw.isdigit()) or len(raw) > 18):
        raise RequestError(
            "Invalid value for 'starting_after': a non-negative integer is required.",
            param="starting_after",
        )
    return int(raw)


def _not_found(target: str) -> NotFound:
    return NotFound(f"Response with id '{target[:100]}' not found.", param="response_id")


def _method_not_allowed(allowed: str) -> SluiceError:
    return RequestError(
        f"Method not allowed; use {allowed}.", status=405, code="method_not_allowed"
    )
