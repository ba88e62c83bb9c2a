"""Small pure-ASGI helpers for the lean endpoints (no framework on the streaming path)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from sluice.errors import BodyTooLarge, SluiceError
from sluice.events import StreamError
from sluice.request_ids import current_request_id
from sluice.telemetry.record import current as current_record
from sluice.wire.errors import error_body, stream_error_body

logger = logging.getLogger("sluice.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

JSON = b"application/json"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientDisconnected(Exception):
    """The client went away while we were still reading its request."""


async def read_body(receive: Receive, limit: int, declared: int | None = None) -> bytes:
    """The whole request body; BodyTooLarge (413) as soon as it passes ``limit``."""
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"Request body is {declared} bytes; the limit is {limit} bytes.")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON),
                (b"content-length", str(len(body)).encode()),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def retry_headers(retry_after: float | None) -> list[tuple[bytes, bytes]]:
    if retry_after is None:
        return []
    return [
        (b"retry-after", str(math.ceil(retry_after)).encode()),
        (b"retry-after-ms", str(int(retry_after * 1000)).encode()),
    ]


def error_response(
    error: SluiceError | StreamError,
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The one mapping from an error to an HTTP response: status, OpenAI-shaped body
    (with the request's id and, for upstream failures, a ``hint``), and headers
    (``Retry-After``, ``x-ratelimit-*``). Every HTTP edge — the lean endpoints and the
    framework's exception handler — answers through it. An upstream failure is logged
    here too, once, with its hint: the operator's side of the same message."""
    request_id = current_request_id()
    record = current_record()
    if record is not None:
        record.error = error.code or type(error).__name__
    if isinstance(error, StreamError):
        body = stream_error_body(error, request_id)
    else:
        body = error_body(error, request_id)
    if error.hint is not None:
        logger.warning(
            "answered %d %s: %s; hint: %s", error.status, error.code, error.message, error.hint
        )
    extra: list[tuple[bytes, bytes]] = list(getattr(error, "headers", []))
    return error.status, body, [*retry_headers(error.retry_after), *extra]


async def send_error(send: Send, error: SluiceError | StreamError) -> None:
    """An OpenAI-shaped error response (the status is still ours to choose)."""
    status, body, headers = error_response(error)
    await send_json(send, status, body, headers)


def json_dumps(value: Any) -> bytes:
    return orjson.dumps(value)
