"""The W3C trace context of the upstream attempt being made, for providers to send as
``traceparent`` (https://www.w3.org/TR/trace-context/#traceparent-header), so an
upstream that traces joins the gateway's trace.

Set per attempt by the tracer (``sluice.telemetry.spans``) in the generation's task and
read by a provider in the same task, as the request id is: a ``ContextVar``, no argument
through the layers and nothing of OpenTelemetry here. With tracing off it is never set,
and reading it is the one ``ContextVar.get`` per upstream call.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

HEADER = "traceparent"

_CURRENT: ContextVar[str | None] = ContextVar("sluice_traceparent", default=None)


def bind(value: str) -> Token[str | None]:
    """``value`` is the trace context of the attempt starting in this context; give the
    token back to ``reset`` when the attempt is over."""
    return _CURRENT.set(value)


def reset(token: Token[str | None]) -> None:
    _CURRENT.reset(token)


def current_traceparent() -> str | None:
    return _CURRENT.get()


__all__ = ["HEADER", "bind", "current_traceparent", "reset"]
