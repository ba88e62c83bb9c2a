"""One request's record: made at the HTTP boundary, filled in by whoever handles the
request, and — when the response is over — turned into its metrics, its log line and
its row in the request log (``Telemetry.finish``).

The record rides in a ``ContextVar`` next to the request id, so a handler fills it in
without it being passed down (``current()``): the completions and chat endpoints say
which answer they started and the cache's outcome; the error mapping says which error
was answered. The boundary stamps the status and when the first byte of the body went
out (the client's time to first token). Nothing here runs per chunk.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sluice.events import Finish

if TYPE_CHECKING:
    from sluice.engine.generation import Generation

#: Route names for metrics and the log: a fixed set, whatever the path.
_ROUTES = (
    ("/v1/chat/completions", "chat.completions"),
    ("/v1/responses", "responses"),
    ("/v1/messages", "messages"),
    ("/v1/streams/", "streams"),
    ("/v1/conversations", "conversations"),
    ("/v1/admin/", "admin"),
    ("/v1/models", "models"),
    ("/v1/session", "session"),
    ("/v1/shared/", "shared"),
    ("/share/", "page"),
    ("/health", "health"),
    ("/metrics", "metrics"),
    ("/static/", "page"),
)


#: Paths that end in a credential (a share link's token, http/shares.py): the log line,
#: the request log and the span get the prefix alone.
_SECRET_PATHS = ("/v1/shared/", "/share/")

#: Routes whose first body bytes are the first token.
_TOKEN_FIRST = frozenset({"chat.completions"})


def route_of(kind: str, path: str) -> str:
    if kind == "websocket":
        return "ws"
    if path == "/chat":
        return "chat"
    if path == "/":
        return "page"
    for prefix, name in _ROUTES:
        if path.startswith(prefix):
            return name
    return "other"


@dataclass(slots=True, eq=False)
class RequestRecord:
    id: str
    method: str
    route: str
    path: str
    #: ``time.monotonic()`` and wall-clock time at arrival.
    started: float
    at: float
    status: int = 0
    #: When the first non-empty body bytes were handed to the server (monotonic).
    first_byte: float | None = None
    model: str | None = None
    key_id: str | None = None
    key_name: str | None = None
    owner: str | None = None
    #: The answer this request started or read (chat completions, chat, resume).
    generation: Generation | None = None
    #: The response cache's outcome: hit, miss, refresh, bypass (None: not asked).
    cache: str | None = None
    coalesced: bool = False
    #: The error answered (its ``code``, or its type when it has none).
    error: str | None = None
    #: Guardrails that took effect (``rule:action``), each once.
    guardrails: list[str] | None = None

    def guardrail(self, what: str) -> None:
        if self.guardrails is None:
            self.guardrails = [what]
        elif what not in self.guardrails:
            self.guardrails.append(what)

    @property
    def duration(self) -> float:
        return time.monotonic() - self.started

    @property
    def client_ttft(self) -> float | None:
        """Seconds from arrival to the first token written, where the first body bytes
        are the first token (not on the chat route, whose first frame is ``start``)."""
        if self.generation is None or self.first_byte is None:
            return None
        if self.route not in _TOKEN_FIRST:
            return None
        return self.first_byte - self.started

    def facts(self) -> dict[str, Any]:
        """The record as the log line and the request log see it: no text, no secret."""
        generation = self.generation
        facts: dict[str, Any] = {
            "request_id": self.id,
            "method": self.method,
            "route": self.route,
            "path": self.path[:200],
            "status": self.status,
            "model": self.model,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "owner": self.owner,
            "ttft_ms": _ms(self.client_ttft),
            "duration_ms": _ms(self.duration),
            "cache": self.cache,
            "coalesced": self.coalesced or None,
            "error": self.error,
            "guardrails": ",".join(self.guardrails)[:200] if self.guardrails else None,
        }
        if generation is not None:
            usage = generation.usage
            first = generation.first_token_at
            facts |= {
                "stream_id": generation.id,
                "served_by": generation.served_by,
                "upstream_ttft_ms": _ms(first - generation.started_at) if first else None,
                "prompt_tokens": usage.prompt_tokens if usage else None,
                "completion_tokens": usage.completion_tokens if usage else None,
                "retries": max(0, generation.route.attempts - 1),
                "finish_reason": _finish_reason(generation),
                "state": generation.state.value,
            }
        return facts


def _finish_reason(generation: Generation) -> str | None:
    for event in reversed(generation.log.events):
        if type(event) is Finish and event.index == 0:
            return event.reason
    return None


def _ms(seconds: float | None) -> float | None:
    return round(seconds * 1000, 2) if seconds is not None else None


_CURRENT: ContextVar[RequestRecord | None] = ContextVar("sluice_request_record", default=None)


def loggable(path: str) -> str:
    """``path`` as it may be recorded: without a share link's token."""
    for prefix in _SECRET_PATHS:
        if path.startswith(prefix):
            return prefix + "[token]"
    return path


def begin(request_id: str, kind: str, method: str, path: str) -> RequestRecord:
    record = RequestRecord(
        request_id,
        method,
        route_of(kind, path),
        loggable(path),
        time.monotonic(),
        time.time(),
    )
    _CURRENT.set(record)
    return record


def current() -> RequestRecord | None:
    """The record of the request being handled here (None outside one)."""
    return _CURRENT.get()
