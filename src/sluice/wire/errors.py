"""OpenAI-shaped error bodies: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import orjson

from sluice.errors import SluiceError
from sluice.events import StreamError


def error_object(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_body(exc: SluiceError) -> bytes:
    return orjson.dumps(error_object(exc.message, exc.type, exc.param, exc.code))


def stream_error_body(error: StreamError) -> bytes:
    return orjson.dumps(error_object(error.message, error.type, None, error.code))


def stream_error_from(exc: SluiceError) -> StreamError:
    return StreamError(
        type=exc.type,
        message=exc.message,
        code=exc.code,
        status=exc.status,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
    )
