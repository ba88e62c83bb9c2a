"""The spans, when tracing is on (``traces.start_tracing``; off, this module is never
imported).

::

    SERVER  POST /v1/chat/completions   one per HTTP request or WebSocket, from the boundary
      │                                   (http/boundary.py) to the end of its response
      ├─ CLIENT  chat broken             one per upstream attempt (Generation._attempts):
      ├─ CLIENT  chat broken               retries and fallbacks each get their own; the
      └─ CLIENT  chat relay                upstream gets the attempt's ``traceparent``

The server span is made current in the request's context, so the answer's task (started
while handling the request) starts its attempts under it, wherever it runs on. A client's
own well-formed ``traceparent`` makes the server span a child of the client's span.

Attributes follow the OpenTelemetry HTTP and GenAI semantic conventions; the gateway's
own are ``sluice.*``. None carries a key, a prompt or an answer. Work per request: one
span started and ended, its attributes read from the request's record; per attempt, one
span; never per chunk. Spans leave in batches from the SDK's own thread, and
``aclose`` sends the last of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sluice import traceparent
from sluice.errors import SluiceError
from sluice.events import Event, Finish, StreamError
from sluice.settings import ModelConfig
from sluice.telemetry.record import RequestRecord
from sluice.telemetry.traces import TraceExport, shown

logger = logging.getLogger("sluice.telemetry")

#: Route names (``record.route``) whose path is the route itself: the server span is
#: named after it, as the HTTP conventions ask (``{method} {http.route}``). Other routes
#: carry ids in their paths; their spans are named after the route's fixed name.
_TEMPLATES = {
    "chat.completions": "/v1/chat/completions",
    "chat": "/chat",
    "ws": "/ws",
    "metrics": "/metrics",
}
_CLIENT_CONTEXT = (b"traceparent", b"tracestate")
#: The longest a shutdown waits for the last spans to leave.
SHUTDOWN_SECONDS = 5.0

#: Ends what was started: a request's span (when its response is over), an attempt's
#: span (given the attempt's error, None if it succeeded).
RequestEnd = Callable[[], None]
AttemptEnd = Callable[[BaseException | None], None]


class Tracing:
    def __init__(self, export: TraceExport, models: Sequence[ModelConfig]) -> None:
        # The SDK's own variables (sampler, batch sizes and delay, export headers,
        # timeout, compression, certificates, resource attributes) keep their meaning;
        # the endpoint and the service name are the edge's decision.
        resource = Resource.create({SERVICE_NAME: export.service_name})
        # Closed by aclose, not at interpreter exit; never the global provider: an
        # embedding program's own tracing stays its own.
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=export.endpoint))
        )
        self._tracer = self._provider.get_tracer("sluice")
        self._propagator = TraceContextTextMapPropagator()
        #: Per model: its provider kind, and where its upstream is (no credentials).
        self._models: dict[str, dict[str, Any]] = {m.name: _model_attributes(m) for m in models}
        self._providers = {m.name: m.provider for m in models}
        logger.info("exporting traces to %s", shown(export.endpoint))

    # -- one per request: from the boundary ------------------------------------------

    def request(self, record: RequestRecord, scope: Mapping[str, Any]) -> RequestEnd:
        """Start the request's server span, current in this context from now on; the
        function returned ends it (once the response is over)."""
        route = record.route
        template = _TEMPLATES.get(route)
        attributes: dict[str, Any] = {
            "http.request.method": record.method,
            "url.path": record.path[:200],
            "url.scheme": scope.get("scheme", "http"),
            "sluice.route": route,
            "sluice.request_id": record.id,
        }
        if template is not None:
            attributes["http.route"] = template
        version = scope.get("http_version")
        if version:
            attributes["network.protocol.version"] = version
        parent = self._client_context(scope)
        span = self._tracer.start_span(
            f"{record.method} {template or route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))

        def end() -> None:
            try:
                self._finish(span, record)
            except Exception:
                logger.exception("finishing the span of %s failed", record.id)
            finally:
                span.end()
                otel_context.detach(token)

        return end

    def _client_context(self, scope: Mapping[str, Any]) -> Context | None:
        """The client's trace, when it sent a ``traceparent`` (the propagator checks its
        form and length); None: the current context (a new trace, at the boundary)."""
        carrier = {}
        for name, value in scope.get("headers", ()):
            if name in _CLIENT_CONTEXT:
                carrier[name.decode()] = value.decode("latin-1")
        if "traceparent" not in carrier:
            return None
        return self._propagator.extract(carrier)

    def _finish(self, span: Span, record: RequestRecord) -> None:
        status = record.status
        attributes: dict[str, Any] = {}
        if status:
            attributes["http.response.status_code"] = status
        if record.error is not None:
            attributes["sluice.error"] = record.error
        if record.cache is not None:
            attributes["sluice.cache"] = record.cache
        if record.coalesced:
            attributes["sluice.coalesced"] = True
        failure: str | None = None
        if status >= 500:
            failure = record.error or str(status)
        generation = record.generation
        if generation is not None:
            asked, served = generation.model, generation.served_by
            attributes |= {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": asked,
                "gen_ai.provider.name": self._providers.get(served or asked, "unknown"),
                "sluice.stream_id": generation.id,
                "sluice.answer.state": generation.state.value,
                "sluice.attempts": generation.route.attempts,
            }
            if served is not None:
                attributes["gen_ai.response.model"] = served
            usage = generation.usage
            if usage is not None:
                attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
            reasons, error = _ending(generation.log.events, generation.request.n)
            if reasons:
                attributes["gen_ai.response.finish_reasons"] = reasons
            if error is not None and failure is None:
                # The answer failed after its 200 went out (in-band): still a failure.
                failure = error.code or error.type
        elif record.model is not None:
            attributes["gen_ai.request.model"] = record.model
        if failure is not None:
            attributes["error.type"] = failure
            span.set_status(Status(StatusCode.ERROR, failure))
        span.set_attributes(attributes)

    # -- one per upstream attempt: from the engine -----------------------------------

    def attempt(self, model: str, number: int) -> AttemptEnd:
        """Start an attempt's client span, under the request's span (the context the
        answer's task was started in), and hand its trace context to the provider; the
        function returned ends it with the attempt's error (None: it succeeded)."""
        span = self._tracer.start_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={**self._models.get(model, {}), "sluice.attempt": number},
        )
        sent = span.get_span_context()
        token = traceparent.bind(
            f"00-{sent.trace_id:032x}-{sent.span_id:016x}-{int(sent.trace_flags):02x}"
        )

        def end(error: BaseException | None) -> None:
            traceparent.reset(token)
            try:
                if isinstance(error, asyncio.CancelledError):
                    # Stopped (a client left, a stop, shutdown): not the upstream's failure.
                    span.set_attribute("sluice.cancelled", True)
                elif error is not None:
                    kind = _error_type(error)
                    span.set_attribute("error.type", kind)
                    span.set_status(Status(StatusCode.ERROR, kind))
            finally:
                span.end()

        return end

    async def aclose(self) -> None:
        """Send what is left and stop, waiting ``SHUTDOWN_SECONDS`` at most. The export
        is a blocking HTTP call, retried while a collector is down: it runs in a daemon
        thread, which a process that is exiting does not wait for."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def shut_down() -> None:
            try:
                self._provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                    loop.call_soon_threadsafe(done.set)

        threading.Thread(target=shut_down, name="sluice-traces-shutdown", daemon=True).start()
        try:
            async with asyncio.timeout(SHUTDOWN_SECONDS):
                await done.wait()
        except TimeoutError:
            logger.warning(
                "the last spans were not sent within %g s (is the collector up?)",
                SHUTDOWN_SECONDS,
            )


def _model_attributes(model: ModelConfig) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model.name,
        "gen_ai.provider.name": model.provider,
        "sluice.upstream_model": model.upstream_name,
    }
    if model.base_url:
        try:
            parts = urlsplit(model.base_url)
            host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            host = None
        if host:
            attributes["server.address"] = host
            attributes["server.port"] = port
    return attributes


def _error_type(error: BaseException) -> str:
    if isinstance(error, SluiceError):
        return error.code or type(error).__name__
    return type(error).__name__


def _ending(events: Sequence[Event], choices: int) -> tuple[list[str], StreamError | None]:
    """Each choice's finish reason (by index), and the stream's error if it failed (a
    StreamError is always the last event). Finishes are at the end of the log: read
    backwards, stopping once every choice is found."""
    error = events[-1] if events and isinstance(events[-1], StreamError) else None
    found: dict[int, str] = {}
    for event in reversed(events):
        if isinstance(event, Finish):
            found.setdefault(event.index, event.reason)
            if len(found) >= choices:
                break
    return [found[index] for index in sorted(found)], error


__all__ = ["AttemptEnd", "RequestEnd", "Tracing"]
