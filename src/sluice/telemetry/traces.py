"""Traces (opt-in): whether to export OpenTelemetry spans, decided once at the edge.

``sluice serve`` reads the standard variables when it starts (``TraceExport.
from_environ``, in ``http/server.py``) and hands the decision to ``Runtime.build``;
nothing below reads them. Tracing is on when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (a
full URL, used as given) or ``OTEL_EXPORTER_OTLP_ENDPOINT`` (a base URL: ``/v1/traces``
is appended) is set, unless ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``.
Spans go out over OTLP/HTTP with protobuf bodies; ``service.name`` is ``sluice`` unless
``OTEL_SERVICE_NAME`` says otherwise.

Off, nothing of the OpenTelemetry SDK is imported or built, and no hook runs per request
or per attempt: the spans themselves are in ``spans.py``, imported by ``start`` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sluice.errors import ConfigError

if TYPE_CHECKING:
    from sluice.settings import ModelConfig
    from sluice.telemetry.spans import Tracing

DEFAULT_SERVICE_NAME = "sluice"
#: The protocols an OTLP exporter may be told to speak; only this one is built in.
_HTTP_PROTOBUF = "http/protobuf"


@dataclass(frozen=True, slots=True)
class TraceExport:
    """Where spans go: the OTLP/HTTP traces URL, and the service they are from."""

    endpoint: str
    service_name: str = DEFAULT_SERVICE_NAME

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> TraceExport | None:
        """The export the standard ``OTEL_*`` variables ask for; None: tracing is off.
        Raises ConfigError for one that cannot work (gRPC, which is not built in)."""
        if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return None
        exporters = environ.get("OTEL_TRACES_EXPORTER", "").replace(" ", "").lower()
        if exporters and "otlp" not in exporters.split(","):
            return None  # "none", or exporters sluice does not build
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        if not endpoint:
            base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            if not base:
                return None
            # The specification's rule for the signal path (and the SDK's own).
            endpoint = f"{base.removesuffix('/')}/v1/traces"
        protocol = (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or _HTTP_PROTOBUF
        ).strip()
        if protocol != _HTTP_PROTOBUF:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: sluice exports "
                f"traces over OTLP {_HTTP_PROTOBUF} (usually port 4318)"
            )
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                "the OTLP traces endpoint must be an http:// or https:// URL, "
                f"not {shown(endpoint)!r}"
            )
        service = environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
        return cls(endpoint, service)


def shown(url: str) -> str:
    """``url`` fit for a log line: no user or password, no query."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "(not a URL)"
    if not parts.scheme:
        return "(not a URL)"
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"


def start_tracing(export: TraceExport, models: Sequence[ModelConfig]) -> Tracing:
    """The tracer of one process (a TracerProvider exporting in batches from its own
    thread); ``Tracing.aclose`` flushes and stops it."""
    from sluice.telemetry.spans import Tracing

    return Tracing(export, models)


__all__ = ["DEFAULT_SERVICE_NAME", "TraceExport", "shown", "start_tracing"]
