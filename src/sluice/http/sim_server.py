"""``sluice sim``: the simulated model as a standalone upstream, OpenAI-compatible
(``/v1/chat/completions``) and Anthropic-compatible (``/v1/messages``) at once.

For benchmarks, for fault tests of the gateway (it injects failures on request and
reports what it saw at ``GET /sim/stats``: attempts, completions and client disconnects
per ``sim.key``), and for testing any other OpenAI or Anthropic client. Plain ASGI, lean
enough that a benchmark measures the gateway, not the simulator. It lives here, with
HTTP: the simulated model itself (``providers/sim/``) knows no web server, like any
provider. Both formats use the gateway's own codecs: a Messages body becomes a
ChatRequest (``wire/anthropic_request.py``), events become Messages records
(``wire/anthropic_events.py``), errors Anthropic's bodies. In the Messages format the
``malformed_after`` fault is the failure Anthropic really sends mid-stream: an
``error`` event (``overloaded_error``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Protocol

import orjson

from sluice.errors import RequestError, SluiceError
from sluice.events import Event, StreamError, Usage
from sluice.http.asgi import (
    SSE_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    error_response,
    read_body,
    retry_headers,
    send_json,
)
from sluice.providers.sim.moderation import moderate
from sluice.providers.sim.options import SimLimits, SimOptions
from sluice.providers.sim.play import Fault, KeyStats, SimStats, play
from sluice.providers.sim.response_format import structured_output
from sluice.providers.sim.script import Script, build_script, draw_seed
from sluice.wire import anthropic_errors
from sluice.wire.anthropic_events import MessagesSSE, error_record, message_object, sse
from sluice.wire.anthropic_request import parse_messages_request
from sluice.wire.errors import error_object
from sluice.wire.openai_chunks import DONE, ChunkEncoder, Completion
from sluice.wire.openai_request import ChatRequest, parse_chat_request

MALFORMED = b'data: {"id": "chatcmpl-sim", "choices": [\n\n'
MODELS = ("sim", "sim-echo", "sim-think")
#: What Anthropic sends when it fails mid-stream.
OVERLOADED = sse(error_record(StreamError("overloaded_error", "Overloaded", status=529)))


class _Writer(Protocol):
    """One answer's stream in one wire format."""

    def encode(self, events: list[Event]) -> bytes: ...

    def malformed(self) -> bytes: ...

    def end(self) -> bytes: ...


class _Chunks:
    def __init__(self, encoder: ChunkEncoder) -> None:
        self._encoder = encoder

    def encode(self, events: list[Event]) -> bytes:
        return self._encoder.encode(events)

    def malformed(self) -> bytes:
        return MALFORMED

    def end(self) -> bytes:
        return DONE


class _Records:
    def __init__(self, writer: MessagesSSE) -> None:
        self._writer = writer
        self._usage: Usage | None = None

    def encode(self, events: list[Event]) -> bytes:
        for event in events:
            if type(event) is Usage:
                self._usage = event
        return self._writer.encode(events)

    def malformed(self) -> bytes:
        return OVERLOADED

    def end(self) -> bytes:
        return self._writer.end(self._usage)


class SimDrop(Exception):
    """Raised to make the server cut the connection mid-body (a simulated drop)."""


class SimServer:
    def __init__(self, options: SimOptions, limits: SimLimits | None = None) -> None:
        self.options = options
        #: What one request's ``sim`` object may ask for (``--max-length``).
        self.limits = limits or SimLimits()
        self.stats = SimStats()
        self._started = int(time.time())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path.endswith("/chat/completions") and scope["method"] == "POST":
            await self._chat(receive, send, messages=False)
        elif path.endswith("/messages") and scope["method"] == "POST":
            await self._chat(receive, send, messages=True)
        elif path.endswith("/moderations") and scope["method"] == "POST":
            await self._moderate(receive, send)
        elif path.endswith("/models"):
            data = [
                {"id": m, "object": "model", "created": self._started, "owned_by": "sluice"}
                for m in MODELS
            ]
            await send_json(send, 200, orjson.dumps({"object": "list", "data": data}))
        elif path == "/sim/stats":
            if scope["method"] == "DELETE":
                self.stats.reset()
            await send_json(send, 200, orjson.dumps(self.stats.snapshot()))
        elif path in ("/health", "/health/live", "/health/ready"):
            await send_json(send, 200, b'{"status":"ok"}')
        else:
            # What OpenAI answers for a route it does not have.
            message = f"Invalid URL ({scope['method']} {path})"
            await send_json(send, 404, orjson.dumps(error_object(message, "invalid_request_error")))

    async def _moderate(self, receive: Receive, send: Send) -> None:
        try:
            answer = _moderate_body(await read_body(receive, 1024 * 1024))
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_json(send, *error_response(exc))
            return
        self.stats.moderations += 1
        await send_json(send, 200, orjson.dumps(answer))

    async def _chat(self, receive: Receive, send: Send, *, messages: bool) -> None:
        try:
            limits = self.limits
            raw = await read_body(receive, 16 * 1024 * 1024)
            request = (
                parse_messages_request(raw)
                if messages
                else parse_chat_request(raw, max_choices=limits.max_choices)
            )
            options = self.options.merged(request.body.get("sim"), limits=limits)
            if request.model.endswith("-echo"):
                options = options.merged({"style": "echo"})
            if request.model.endswith("-think") and not options.reasoning:
                options = options.merged({"reasoning": 60})
            structured_output(request.body)
        except ClientDisconnected:
            return
        except SluiceError as exc:
            status, body, headers = error_response(exc)
            if messages:
                body = anthropic_errors.reshape(status, body)
            await send_json(send, status, body, headers)
            return
        stats = self.stats
        attempt = stats.attempt(options.key, request.messages, request.body.get("temperature"))
        key = stats.key(options.key)
        if options.fail_status and (options.fail_times is None or attempt <= options.fail_times):
            key.failed += 1
            # The literal status asked for, as a real upstream would send it.
            status = options.fail_status
            error = (
                anthropic_errors.error_object(
                    anthropic_errors.error_type(status), "simulated failure"
                )
                if messages
                else error_object("simulated failure", "server_error", None, "simulated")
            )
            await send_json(send, status, orjson.dumps(error), retry_headers(options.retry_after))
            return
        drawn = draw_seed(request.body)
        script = build_script(request.body, options, max_length=limits.max_length, seed=drawn)
        seed = request.body.get("seed", drawn)
        if not request.stream:
            events: list[Event] = []
            async for step in play(script, options, seed):
                if isinstance(step, Fault):
                    raise SimDrop
                events += step
            key.completed += 1
            answer = _whole(request, events, attempt, messages=messages)
            await send_json(send, 200, orjson.dumps(answer))
            return
        encoder: _Writer = (
            _Records(MessagesSSE(f"msg_sim{attempt}", request.model))
            if messages
            else _Chunks(
                ChunkEncoder(
                    f"chatcmpl-sim{attempt}",
                    int(time.time()),
                    request.model,
                    include_usage=request.include_usage,
                )
            )
        )
        stats.active += 1
        loop = asyncio.get_running_loop()
        # The stream and the disconnect listener race; whichever ends first ends the
        # other, so a client leaving mid-sleep is seen (and counted) at once.
        player = loop.create_task(self._play(send, script, options, seed, encoder))
        watcher = loop.create_task(_watch(receive, key))
        outcome = "disconnected"
        try:
            await asyncio.wait({player, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if player.done():
                outcome = player.result()
        finally:
            stats.active -= 1
            for task in (player, watcher):
                task.cancel()
            if outcome == "completed":
                key.completed += 1
            elif outcome == "disconnected":
                key.disconnected += 1
        if outcome == "dropped":
            raise SimDrop

    async def _play(
        self,
        send: Send,
        script: Script,
        options: SimOptions,
        seed: int | None,
        encoder: _Writer,
    ) -> str:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        async for step in play(script, options, seed):
            if step is Fault.DROP:
                return "dropped"
            if step is Fault.MALFORMED:
                body = encoder.malformed()
                await send({"type": "http.response.body", "body": body, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return "malformed"
            body = encoder.encode(step)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": encoder.end()})
        return "completed"


def _whole(
    request: ChatRequest, events: list[Event], attempt: int, *, messages: bool
) -> dict[str, object]:
    """The non-streamed answer: a Message, or a chat.completion."""
    if messages:
        return message_object(events, f"msg_sim{attempt}", request.model)
    completion = Completion()
    for event in events:
        completion.add(event)
    return completion.to_object(
        f"chatcmpl-sim{attempt}", int(time.time()), request.model, request.n
    )


def _moderate_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    texts = body.get("input") if isinstance(body, dict) else None
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise RequestError("'input' must be a string or a list of strings.", param="input")
    model = body.get("model") if isinstance(body.get("model"), str) else None
    return moderate(texts, model or "omni-moderation-latest")


async def _watch(receive: Receive, key: KeyStats) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Stamped here, the moment the socket closed, not when the stream next ticks.
            key.disconnected_at.append(time.time())
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
