"""The values a stream is made of.

Every provider turns its upstream's wire format into these, and every edge (the
OpenAI-compatible API, the chat app API, the terminal) turns them back into its own.
They are small frozen values with no behaviour: cheap to build on the per-chunk path,
safe to keep in an event log and to replay.

``index`` is always the choice index (``n`` > 1 gives several choices).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class RoleStart:
    """A choice begins; the first event of each choice."""

    index: int = 0
    role: str = "assistant"
    #: The choice opens with a tool call, not text: OpenAI's first delta then carries
    #: ``"content": null`` (``""`` before text), and the SDKs' helpers end with
    #: ``content`` None only if it did.
    tool_call: bool = False


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    index: int = 0
    #: Upstream logprobs for this piece of text, passed through untouched.
    logprobs: Any = None


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """Reasoning text (``reasoning_content`` on vLLM, DeepSeek and friends)."""

    text: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one tool call. ``id``, ``type`` and ``name`` come only in a call's
    first delta; later deltas carry more ``arguments`` text."""

    call_index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None
    index: int = 0
    type: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    #: ``prompt_tokens_details`` / ``completion_tokens_details`` as the upstream sent them.
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Finish:
    """A choice ended. ``reason`` is ``stop``, ``length``, ``tool_calls``,
    ``content_filter`` or ``incomplete`` (stopped before the model finished)."""

    reason: str
    index: int = 0


@dataclass(frozen=True, slots=True)
class StreamError:
    """The stream failed. Always the last event of a stream that carries it."""

    type: str
    message: str
    code: str | None = None
    status: int = 502
    retryable: bool = False
    #: Seconds the client should wait before retrying (429/503), when known.
    retry_after: float | None = None
    #: The request parameter at fault, when there is one.
    param: str | None = None
    #: The name of the ``sluice.errors`` class it stands for, so that an in-process
    #: caller gets that exception back (``wire.errors.error_from_stream``).
    exception: str | None = None
    #: What the operator can do about it (``sluice.errors.recommendation``).
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """Facts about the whole response that the upstream reported (OpenAI's
    ``system_fingerprint`` and ``service_tier``), passed on in every chunk after it;
    None where the upstream said nothing. Comes before the choices start."""

    system_fingerprint: str | None = None
    service_tier: str | None = None


@dataclass(frozen=True, slots=True)
class Failover:
    """The answer continues on another model after ``from_model`` failed mid-answer."""

    from_model: str
    to_model: str
    reason: str


Event = (
    RoleStart
    | TextDelta
    | ReasoningDelta
    | ToolCallDelta
    | Usage
    | Finish
    | StreamError
    | Failover
    | ResponseMeta
)

__all__ = [
    "Event",
    "Failover",
    "Finish",
    "ReasoningDelta",
    "ResponseMeta",
    "RoleStart",
    "StreamError",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
]
