"""``sluice sim``: the simulated model as a standalone OpenAI-compatible upstream.

For benchmarks, for fault tests of the gateway (it injects failures on request and
reports what it saw at ``GET /sim/stats``: attempts, completions and client disconnects
per ``sim.key``), and for testing any other OpenAI client. Plain ASGI, lean enough that
a benchmark measures the gateway, not the simulator. It lives here, with HTTP: the
simulated model itself (``providers/sim/``) knows no web server, like any provider.
"""

from __future__ import annotations

import asyncio
import time

import orjson

from sluice.errors import SluiceError
from sluice.http.asgi import (
    SSE_HEADERS,
    ClientDisconnected,
    Receive,
    Scope,
    Send,
    read_body,
    retry_headers,
    send_error,
    send_json,
)
from sluice.providers.sim.options import SimLimits, SimOptions
from sluice.providers.sim.play import Fault, KeyStats, SimStats, play
from sluice.providers.sim.response_format import structured_output
from sluice.providers.sim.script import Script, build_script, draw_seed
from sluice.wire.errors import error_object
from sluice.wire.openai_chunks import DONE, ChunkEncoder, Completion
from sluice.wire.openai_request import parse_chat_request

MALFORMED = b'data: {"id": "chatcmpl-sim", "choices": [\n\n'
MODELS = ("sim", "sim-echo")


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
            await self._chat(receive, send)
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

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            limits = self.limits
            request = parse_chat_request(
                await read_body(receive, 16 * 1024 * 1024), max_choices=limits.max_choices
            )
            options = self.options.merged(request.body.get("sim"), limits=limits)
            if request.model.endswith("-echo"):
                options = options.merged({"style": "echo"})
            structured_output(request.body)
        except ClientDisconnected:
            return
        except SluiceError as exc:
            await send_error(send, exc)
            return
        stats = self.stats
        attempt = stats.attempt(options.key, request.messages)
        key = stats.key(options.key)
        if options.fail_status and (options.fail_times is None or attempt <= options.fail_times):
            key.failed += 1
            # The literal status asked for, as a real upstream would send it.
            error = error_object("simulated failure", "server_error", None, "simulated")
            await send_json(
                send, options.fail_status, orjson.dumps(error), retry_headers(options.retry_after)
            )
            return
        drawn = draw_seed(request.body)
        script = build_script(request.body, options, max_length=limits.max_length, seed=drawn)
        seed = request.body.get("seed", drawn)
        completion_id = f"chatcmpl-sim{attempt}"
        created = int(time.time())
        if not request.stream:
            completion = Completion()
            async for step in play(script, options, seed):
                if isinstance(step, Fault):
                    raise SimDrop
                for event in step:
                    completion.add(event)
            key.completed += 1
            answer = completion.to_object(completion_id, created, request.model, request.n)
            await send_json(send, 200, orjson.dumps(answer))
            return
        encoder = ChunkEncoder(
            completion_id, created, request.model, include_usage=request.include_usage
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
        encoder: ChunkEncoder,
    ) -> str:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        async for step in play(script, options, seed):
            if step is Fault.DROP:
                return "dropped"
            if step is Fault.MALFORMED:
                await send({"type": "http.response.body", "body": MALFORMED, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
                return "malformed"
            body = encoder.encode(step)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        await send({"type": "http.response.body", "body": DONE})
        return "completed"


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
