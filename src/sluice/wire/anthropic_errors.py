"""Anthropic-shaped error bodies (``{"type": "error", "error": {"type", "message"}}``),
both ways: the gateway's errors for Messages clients, and an Anthropic upstream's error
types back to the HTTP status they stand for.

Types and statuses as https://docs.anthropic.com/en/api/errors lists them; the official
SDK picks its exception class by status alone (``anthropic._error_classes``).
"""

from __future__ import annotations

from typing import Any

import orjson

#: Status -> Anthropic error type, for the statuses Anthropic documents.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
#: Anthropic error type -> the status it comes with (an ``error`` event mid-stream has
#: no status of its own).
_STATUSES = {kind: status for status, kind in _TYPES.items()}


def error_type(status: int) -> str:
    """The Anthropic type for a gateway status: the documented one, else the nearest
    class (a 503 is the gateway overloaded or draining; other 4xx are the request's)."""
    kind = _TYPES.get(status)
    if kind is not None:
        return kind
    if status == 503:
        return "overloaded_error"
    return "invalid_request_error" if status < 500 else "api_error"


def status_of(kind: str) -> int:
    """The HTTP status an Anthropic error type stands for (unknown types: 500)."""
    return _STATUSES.get(kind, 500)


def error_object(
    kind: str, message: str, *, request_id: str | None = None, hint: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if hint is not None:
        error["hint"] = hint  # ignored by the SDKs, as on the OpenAI edge
    body: dict[str, Any] = {"type": "error", "error": error}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def reshape(status: int, openai_body: bytes) -> bytes:
    """An OpenAI-shaped error body (what the gateway's one error mapping writes) as the
    Anthropic body for the same status; a body that is not one is returned as it was."""
    try:
        body = orjson.loads(openai_body)
    except orjson.JSONDecodeError:
        return openai_body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return openai_body
    hint = error.get("hint")
    request_id = error.get("request_id")
    return orjson.dumps(
        error_object(
            error_type(status),
            error["message"],
            request_id=request_id if isinstance(request_id, str) else None,
            hint=hint if isinstance(hint, str) else None,
        )
    )


def upstream_message(raw: bytes) -> str:
    """The explanation in an Anthropic error body (or the start of whatever it is)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode(errors="replace")
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        message: str = error["message"]
        return message
    return raw[:200].decode(errors="replace")
