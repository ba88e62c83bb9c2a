"""Traces (issue 13, item 7): with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, a running gateway
sends a SERVER span per request and a CLIENT span per upstream attempt to an OTLP/HTTP
receiver started here, and the upstream gets each attempt's ``traceparent``; spans still
queued are sent on shutdown; without the variable nothing of it is built."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from sluice.errors import ConfigError
from sluice.telemetry.traces import TraceExport
from tests.servers import ServerProcess, base_env, free_port

CONFIG = """
[[models]]
name = "relay"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "answering"
retry = {{ attempts = 1 }}

[[models]]
name = "broken"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "failing"
retry = {{ attempts = 2, backoff_initial = 0.01 }}
fallbacks = ["relay"]
cooldown = 0

[[models]]
name = "dead"
provider = "openai"
base_url = "http://127.0.0.1:{dead_port}/v1"
retry = {{ attempts = 1 }}
"""

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
ERROR = 2  # opentelemetry.proto.trace.v1.Status.StatusCode
#: A client's own trace context (W3C): the gateway's span joins it.
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent: str
    start: int
    attributes: dict[str, Any]
    status: int
    service: str


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else None


class Receiver:
    """An OTLP/HTTP collector: ``POST /v1/traces`` with a protobuf body."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.changed = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _export(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest.FromString(body)
        for resource_spans in message.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            span.name,
                            span.kind,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.start_time_unix_nano,
                            {a.key: _value(a.value) for a in span.attributes},
                            span.status.code,
                            resource.get("service.name", ""),
                        )
                    )
        self.changed.set()
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        """Until ``ready()``, checked after each export (bounded by the caller)."""
        while True:
            self.changed.clear()
            if ready():
                return
            await self.changed.wait()

    def server_span(self, request_id: str) -> Span | None:
        found = [
            s
            for s in self.spans
            if s.kind == SERVER and s.attributes.get("sluice.request_id") == request_id
        ]
        assert len(found) <= 1
        return found[0] if found else None

    def attempts(self, server: Span) -> list[Span]:
        children = [s for s in self.spans if s.kind == CLIENT and s.parent == server.span_id]
        return sorted(children, key=lambda s: s.start)


class Upstream:
    """An OpenAI-compatible upstream that records each chat request's headers: model
    ``failing`` answers 500, any other a short streamed answer with usage."""

    CHUNK = (
        'data: {"id":"u","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}\n\n'
    )
    ANSWER = (
        CHUNK % ('{"role":"assistant","content":"hi"}', "null")
        + CHUNK % ("{}", '"stop"')
        + 'data: {"id":"u","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\n\n'
        "data: [DONE]\n\n"
    ).encode()

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        seen = {k.lower(): v for k, v in request.headers.items()}
        seen["model"] = body["model"]
        self.seen.append(seen)
        if body["model"] == "failing":
            error = {"error": {"message": "down", "type": "server_error", "code": None}}
            return web.json_response(error, status=500)
        return web.Response(body=self.ANSWER, content_type="text/event-stream")

    def requests(self, request_id: str) -> list[dict[str, str]]:
        return [seen for seen in self.seen if seen.get("x-request-id") == request_id]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def recording_upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.close()


@asynccontextmanager
async def gateway(tmp: Path, upstream: Upstream, **env: str) -> AsyncIterator[ServerProcess]:
    """A gateway process; started and stopped off the loop, which serves the receiver
    and the upstream meanwhile (a gateway flushes its spans while it stops)."""
    config = tmp / "traces.toml"
    config.write_text(CONFIG.format(upstream=upstream.url, dead_port=free_port()))
    port = free_port()
    server = ServerProcess(
        ["serve", "--config", str(config), "--port", str(port)],
        port,
        tmp / "gateway.log",
        base_env(SLUICE_DATA_DIR=str(tmp / "data"), **env),
    )
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def _ask(
    server: ServerProcess,
    model: str,
    *,
    stream: bool = False,
    headers: dict[str, str] | None = None,
) -> tuple[int, str]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions", json=body, headers=headers or {}
        ) as response,
    ):
        await response.read()
        return response.status, response.headers["x-request-id"]


def _context(traceparent: str) -> tuple[str, str]:
    """The trace and span ids of a sampled W3C ``traceparent`` (version 00)."""
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1, traceparent  # sampled
    return trace_id, span_id


def _ids(span: Span) -> tuple[str, str]:
    return span.trace_id, span.span_id


async def test_a_span_per_request_and_per_upstream_attempt(
    tmp_path: Path, receiver: Receiver, recording_upstream: Upstream
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_SERVICE_NAME": "sluice-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # the SDK's batch delay: export soon
    }
    async with gateway(tmp_path, recording_upstream, **env) as server:
        streamed = await _ask(server, "relay", stream=True)
        fell_back = await _ask(server, "broken")
        joined = await _ask(
            server, "relay", headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
        )
        assert [status for status, _ in (streamed, fell_back, joined)] == [200, 200, 200]
        expected = {streamed[1]: 1, fell_back[1]: 3, joined[1]: 1}

        def arrived() -> bool:
            for request_id, attempts in expected.items():
                span = receiver.server_span(request_id)
                if span is None or len(receiver.attempts(span)) < attempts:
                    return False
            return True

        async with asyncio.timeout(20):
            await receiver.wait_for(arrived)

    upstream = recording_upstream
    # The streamed answer: its request's span, with the GenAI attributes...
    request_id = streamed[1]
    span = receiver.server_span(request_id)
    assert span is not None
    assert span.service == "sluice-under-test"
    assert span.name == "POST /v1/chat/completions"
    assert span.parent == "" and span.status != ERROR
    attributes = span.attributes
    assert {
        key: attributes.get(key)
        for key in (
            "http.request.method",
            "http.response.status_code",
            "url.path",
            "http.route",
            "gen_ai.operation.name",
            "gen_ai.request.model",
            "gen_ai.response.model",
            "gen_ai.provider.name",
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.response.finish_reasons",
            "sluice.cache",
            "sluice.attempts",
        )
    } == {
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "url.path": "/v1/chat/completions",
        "http.route": "/v1/chat/completions",
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "relay",
        "gen_ai.response.model": "relay",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.usage.output_tokens": 2,
        "gen_ai.response.finish_reasons": ["stop"],
        "sluice.cache": "bypass",
        "sluice.attempts": 1,
    }
    assert "error.type" not in attributes
    # ...and one attempt under it, whose context the upstream got.
    (attempt,) = receiver.attempts(span)
    assert (attempt.name, attempt.trace_id) == ("chat relay", span.trace_id)
    assert attempt.attributes["gen_ai.request.model"] == "relay"
    assert attempt.attributes["sluice.upstream_model"] == "answering"
    assert attempt.attributes["sluice.attempt"] == 1
    assert attempt.attributes["server.address"] == "127.0.0.1"
    assert "error.type" not in attempt.attributes and attempt.status != ERROR
    (seen,) = upstream.requests(request_id)
    assert _context(seen["traceparent"]) == _ids(attempt)

    # Two failed attempts, then the fallback: three spans, in order, each sent upstream.
    request_id = fell_back[1]
    span = receiver.server_span(request_id)
    assert span is not None and span.status != ERROR
    assert span.attributes["gen_ai.request.model"] == "broken"
    assert span.attributes["gen_ai.response.model"] == "relay"
    assert span.attributes["sluice.attempts"] == 3
    attempts = receiver.attempts(span)
    assert [(a.name, a.attributes["sluice.attempt"]) for a in attempts] == [
        ("chat broken", 1),
        ("chat broken", 2),
        ("chat relay", 3),
    ]
    assert {a.trace_id for a in attempts} == {span.trace_id}
    assert [a.attributes.get("error.type") for a in attempts] == [
        "upstream_unavailable",
        "upstream_unavailable",
        None,
    ]
    assert [a.status == ERROR for a in attempts] == [True, True, False]
    seen_models = [(s["model"], _context(s["traceparent"])) for s in upstream.requests(request_id)]
    assert seen_models == [
        ("failing", _ids(attempts[0])),
        ("failing", _ids(attempts[1])),
        ("answering", _ids(attempts[2])),
    ]

    # A client that traces: the gateway's span is a child of the client's.
    span = receiver.server_span(joined[1])
    assert span is not None
    assert (span.trace_id, span.parent) == (CLIENT_TRACE, CLIENT_SPAN)
    (attempt,) = receiver.attempts(span)
    assert attempt.trace_id == CLIENT_TRACE
    (seen,) = upstream.requests(joined[1])
    assert _context(seen["traceparent"]) == _ids(attempt)

    # The service's own requests are traced too (the health polls of the start-up).
    assert any(s.name == "GET health" and s.kind == SERVER for s in receiver.spans)


async def test_spans_still_queued_are_sent_on_shutdown(
    tmp_path: Path, receiver: Receiver, recording_upstream: Upstream
) -> None:
    # A batch delay of ten minutes: whatever arrives was sent by the shutdown.
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "600000"}
    async with gateway(tmp_path, recording_upstream, **env) as server:
        answered = await _ask(server, "relay")
        failed = await _ask(server, "dead")
        assert receiver.spans == []
    assert answered[0] == 200 and failed[0] >= 500
    span = receiver.server_span(answered[1])
    assert span is not None and span.service == "sluice"
    assert len(receiver.attempts(span)) == 1
    # A 5xx answer is a failed span, and so is its attempt.
    span = receiver.server_span(failed[1])
    assert span is not None
    assert span.status == ERROR
    assert span.attributes["http.response.status_code"] == failed[0]
    assert span.attributes["error.type"] == "upstream_unavailable"
    (attempt,) = receiver.attempts(span)
    assert attempt.status == ERROR
    assert attempt.attributes["error.type"] == "upstream_unavailable"


#: Serves one request through the gateway the way ``uvicorn --factory
#: sluice.http.server:app_from_environment`` builds it (the edge reads the environment),
#: then tells what of tracing exists in the process.
_UNTRACED = """
import asyncio, json, sys, threading
from sluice.http.server import app_from_environment

async def main():
    gateway = app_from_environment()
    body = json.dumps({"model": "relay", "messages": [{"role": "user", "content": "hi"}]})
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }
    messages = [{"type": "http.request", "body": body.encode(), "more_body": False}]
    over = asyncio.Event()
    async def receive():
        if messages:
            return messages.pop(0)
        await over.wait()  # the client stays until its answer is whole
        return {"type": "http.disconnect"}
    sent = []
    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            over.set()
    async with gateway.api.router.lifespan_context(gateway.api):
        await gateway(scope, receive, send)
        threads = [t.name for t in threading.enumerate() if t.name.startswith("Otel")]
    head = sent[0]
    print(json.dumps({
        "status": head["status"],
        "request_id": dict(head["headers"])[b"x-request-id"].decode(),
        "tracing": gateway.runtime.tracing is not None,
        "on_attempt": gateway.engine.on_attempt is not None,
        "spans_module": "sluice.telemetry.spans" in sys.modules,
        "sdk_trace": "opentelemetry.sdk.trace" in sys.modules,
        "threads": threads,
    }))

asyncio.run(main())
"""


async def test_without_an_endpoint_nothing_of_tracing_is_built(
    tmp_path: Path, recording_upstream: Upstream
) -> None:
    config = tmp_path / "untraced.toml"
    config.write_text(CONFIG.format(upstream=recording_upstream.url, dead_port=free_port()))
    env = {k: v for k, v in base_env().items() if not k.startswith("OTEL_")}
    env |= {"SLUICE_CONFIG_FILE": str(config), "SLUICE_DATA_DIR": str(tmp_path / "data")}
    # Run off the loop's thread of control: the loop serves the upstream meanwhile.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _UNTRACED,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["status"] == 200
    assert not report["tracing"] and not report["on_attempt"]
    assert not report["spans_module"] and not report["sdk_trace"]
    assert report["threads"] == []
    (seen,) = recording_upstream.requests(report["request_id"])
    assert "traceparent" not in seen


# -- the edge's decision --------------------------------------------------------------


def test_the_endpoint_and_service_name_come_from_the_standard_variables() -> None:
    assert TraceExport.from_environ({}) is None
    assert TraceExport.from_environ({"OTEL_SERVICE_NAME": "x"}) is None
    assert TraceExport.from_environ(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    ) == TraceExport("http://collector:4318/v1/traces", "sluice")
    assert TraceExport.from_environ(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example/custom",
            "OTEL_SERVICE_NAME": "edge-gateway",
        }
    ) == TraceExport("https://traces.example/custom", "edge-gateway")
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert TraceExport.from_environ({**on, "OTEL_SDK_DISABLED": "true"}) is None
    assert TraceExport.from_environ({**on, "OTEL_TRACES_EXPORTER": "none"}) is None
    assert TraceExport.from_environ({**on, "OTEL_TRACES_EXPORTER": "otlp"}) is not None
    assert TraceExport.from_environ({**on, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"})


def test_an_export_that_cannot_work_is_refused_at_start() -> None:
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
    with pytest.raises(ConfigError, match="grpc"):
        TraceExport.from_environ({**on, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    with pytest.raises(ConfigError, match="http:// or https://"):
        TraceExport.from_environ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"})
