"""OpenAPI entries for the endpoints served in plain ASGI.

``/v1/chat/completions``, ``/chat`` and ``/v1/streams/…`` never reach FastAPI (the
Gateway dispatches them to lean handlers first), but clients and fuzzers deserve a
schema for them; these routes exist only to describe them.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Header, Query
from pydantic import BaseModel

from sluice.chat.service import TurnRequest
from sluice.wire.openai_request import ChatCompletionBody


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "Invalid request (the field is named in `param`)",
        401: "Missing or wrong API key or session",
        403: "Not allowed (model, admin, CSRF, origin)",
        404: "Unknown model, conversation or stream",
        405: "Method not allowed",
        413: "Request body too large",
        429: "A rate limit or budget",
        500: "Internal error",
        502: "The upstream failed",
        503: "Upstream unavailable, or the server is shutting down",
        504: "The upstream timed out",
    }.items()
}

SSE = {"text/event-stream": {"schema": {"type": "string"}}}


class StreamState(BaseModel):
    id: str
    object: str = "stream"
    status: str
    cancelled: bool
    model: str
    usage: dict[str, int] | None = None


def document(api: FastAPI) -> None:
    def unreachable() -> Any:  # pragma: no cover - served by the lean handlers
        raise RuntimeError("served by the Gateway's plain-ASGI handlers")

    @api.post(
        "/v1/chat/completions",
        tags=["openai"],
        summary="OpenAI-compatible chat completions (stream and non-stream)",
        responses={200: {"content": {"application/json": {}, **SSE}}, **ERRORS},
    )
    def chat_completions(
        body: ChatCompletionBody,
        x_sluice_on_disconnect: str | None = Header(default=None, pattern="^(cancel|detach)$"),
    ) -> Any:
        return unreachable()

    @api.post(
        "/chat",
        tags=["chat"],
        summary="One chat turn, as Server-Sent Events in the app protocol",
        responses={200: {"content": SSE}, **ERRORS},
    )
    def chat(body: TurnRequest) -> Any:
        return unreachable()

    @api.get(
        "/v1/streams/{stream_id}",
        tags=["streams"],
        summary="Resume a stream: replay from `after`, then follow it live",
        responses={200: {"content": SSE}, **ERRORS},
    )
    def resume(
        stream_id: str,
        after: int | None = Query(default=None, ge=0),
        last_event_id: str | None = Header(default=None, pattern="^[0-9]+$"),
    ) -> Any:
        return unreachable()

    @api.post(
        "/v1/streams/{stream_id}/cancel",
        tags=["streams"],
        summary="Stop a stream; the partial answer is kept as incomplete",
        response_model=StreamState,
        responses=ERRORS,
    )
    def cancel(stream_id: str) -> Any:
        return unreachable()
