"""OpenAPI entries for the endpoints FastAPI does not describe by itself.

``/v1/chat/completions``, ``/chat`` and ``/v1/streams/…`` never reach FastAPI (the
Gateway dispatches them to lean handlers first), but clients and fuzzers deserve a
schema for them; these routes exist only to describe them. The web page (``/``), its
files (``/static/…``) and the WebSocket (``/ws``) are real FastAPI routes kept out of
the generated schema; they are added to the document afterwards, without a route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, Query
from fastapi.openapi.models import Example
from pydantic import BaseModel

from sluice.chat.service import TurnRequest
from sluice.wire.anthropic_request import CountTokensBody, MessagesBody
from sluice.wire.openai_request import ChatCompletionBody
from sluice.wire.responses_request import ResponsesBody


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
        409: "The upstream reported a conflict",
        413: "Request body too large",
        415: "The body is not JSON (Content-Type)",
        421: "A Host this gateway does not serve",
        429: "A rate limit or budget",
        500: "Internal error",
        502: "The upstream failed",
        503: "Upstream unavailable, or the server is shutting down",
        504: "The upstream timed out",
    }.items()
}

#: One Server-Sent Event (before OpenAPI 3.2, a stream's `schema` describes each event).
SSE_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string"},
        "data": {"type": "string"},
        "id": {"type": "string"},
        "retry": {"type": "integer"},
    },
}
SSE = {"text/event-stream": {"schema": SSE_EVENT}}


class TokenCount(BaseModel):
    input_tokens: int


class StreamState(BaseModel):
    id: str
    object: str = "stream"
    status: str
    cancelled: bool
    model: str
    usage: dict[str, int] | None = None


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }


def _page_paths() -> dict[str, Any]:
    """The web page, its files and the WebSocket: served, but not FastAPI-described."""
    misdirected = {
        "400": _error_response("A NUL character in the path or query"),
        "421": _error_response("A Host this gateway does not serve"),
    }
    return {
        "/": {
            "get": {
                "tags": ["web"],
                "summary": "The web chat page",
                "operationId": "web_page",
                "responses": {
                    "200": {
                        "description": "The page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **misdirected,
                },
            }
        },
        "/static/{path}": {
            "get": {
                "tags": ["web"],
                "summary": "The web page's own files (scripts, styles)",
                "operationId": "web_static",
                "parameters": [
                    {
                        "name": "path",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                        "example": "app.css",
                    }
                ],
                "responses": {
                    "200": {"description": "The file", "content": {"*/*": {}}},
                    "404": _error_response("No such file"),
                    **misdirected,
                },
            }
        },
        "/ws": {
            "get": {
                "tags": ["chat"],
                "summary": "The chat protocol over a WebSocket (chat, stop, resume, ping frames)",
                "description": "Answers only a WebSocket upgrade; a plain GET is not found.",
                "operationId": "chat_socket",
                "responses": {
                    "101": {"description": "Switching to the WebSocket protocol"},
                    "401": _error_response("Missing or wrong API key or session"),
                    "403": _error_response("Not allowed (origin)"),
                    "404": _error_response("Not a WebSocket upgrade"),
                    **misdirected,
                },
            }
        },
    }


#: What a created thing's id lets a client (or a stateful fuzzer) do next: (path and
#: method that return it, where the id is, the operations that take it, as what).
_LINKS: tuple[tuple[str, str, str, tuple[tuple[str, str], ...], str], ...] = (
    (
        "/v1/conversations",
        "post",
        "$response.body#/id",
        (
            ("/v1/conversations/{conversation_id}", "get"),
            ("/v1/conversations/{conversation_id}", "patch"),
            ("/v1/conversations/{conversation_id}", "delete"),
            ("/v1/conversations/{conversation_id}/messages", "get"),
        ),
        "conversation_id",
    ),
    (
        "/v1/models",
        "get",
        "$response.body#/data/0/id",
        (("/v1/models/{model_id}", "get"),),
        "model_id",
    ),
    (
        "/v1/admin/keys",
        "post",
        "$response.body#/id",
        (("/v1/admin/keys/{key_id}", "delete"),),
        "key_id",
    ),
    *(
        (
            path,
            "post",
            "$response.header.x-sluice-stream-id",
            (("/v1/streams/{stream_id}", "get"), ("/v1/streams/{stream_id}/cancel", "post")),
            "stream_id",
        )
        for path in ("/v1/chat/completions", "/chat", "/v1/messages")
    ),
)


def _add_links(paths: dict[str, Any]) -> None:
    for source, method, where, targets, parameter in _LINKS:
        response = paths.get(source, {}).get(method, {}).get("responses", {}).get("200")
        if response is None:
            continue
        links = response.setdefault("links", {})
        for path, target_method in targets:
            operation = paths.get(path, {}).get(target_method)
            if operation is not None and "operationId" in operation:
                links[operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {parameter: where},
                }


#: A request that works on a default gateway (the built-in `sim` model): a start for
#: clients reading the document, and for fuzzers that would rarely guess a model name.
_COMPLETION_EXAMPLE: Example = {
    "summary": "A short streamed answer from the simulated model",
    "value": {
        "model": "sim",
        "messages": [{"role": "user", "content": "Explain backpressure"}],
        "stream": True,
        "max_tokens": 20,
    },
}
_MESSAGE_EXAMPLE: Example = {
    "summary": "A short streamed message from the simulated model",
    "value": {
        "model": "sim",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "Explain backpressure"}],
        "stream": True,
    },
}
_TURN_EXAMPLE: Example = {
    "summary": "A new conversation's first turn",
    "value": {"message": "Explain backpressure", "options": {"max_tokens": 20}},
}


def document(api: FastAPI) -> None:
    def unreachable() -> Any:  # pragma: no cover - served by the lean handlers
        raise RuntimeError("served by the Gateway's plain-ASGI handlers")

    generate = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            # Generated once and cached by FastAPI: the page paths join the cached copy.
            paths = generate()["paths"]
            paths.update(_page_paths())
            _add_links(paths)
        assert api.openapi_schema is not None
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]

    @api.post(
        "/v1/chat/completions",
        tags=["openai"],
        summary="OpenAI-compatible chat completions (stream and non-stream)",
        responses={200: {"content": {"application/json": {}, **SSE}}, **ERRORS},
    )
    def chat_completions(
        body: Annotated[ChatCompletionBody, Body(openapi_examples={"stream": _COMPLETION_EXAMPLE})],
        x_sluice_on_disconnect: str | None = Header(default=None, pattern="^(cancel|detach)$"),
    ) -> Any:
        return unreachable()

    @api.post(
        "/v1/responses",
        tags=["openai"],
        summary="OpenAI's Responses API (stream and non-stream), on the same engine",
        responses={200: {"content": {"application/json": {}, **SSE}}, **ERRORS},
    )
    def create_response(
        body: ResponsesBody,
        x_sluice_on_disconnect: str | None = Header(default=None, pattern="^(cancel|detach)$"),
    ) -> Any:
        return unreachable()

    @api.get(
        "/v1/responses/{response_id}",
        tags=["openai"],
        summary="A stored response; with `stream=true`, resume it after `starting_after`",
        responses={200: {"content": {"application/json": {}, **SSE}}, **ERRORS},
    )
    def get_response(
        response_id: str,
        stream: bool = Query(default=False),
        starting_after: int | None = Query(default=None, ge=0),
    ) -> Any:
        return unreachable()

    @api.delete("/v1/responses/{response_id}", tags=["openai"], responses=ERRORS)
    def delete_response(response_id: str) -> Any:
        return unreachable()

    @api.post(
        "/v1/responses/{response_id}/cancel",
        tags=["openai"],
        summary="Stop a running response; what it wrote is kept, its status is cancelled",
        responses=ERRORS,
    )
    def cancel_response(response_id: str) -> Any:
        return unreachable()

    @api.post(
        "/v1/messages",
        tags=["anthropic"],
        summary="Anthropic's Messages API (stream and non-stream), on the same engine",
        responses={200: {"content": {"application/json": {}, **SSE}}, **ERRORS},
    )
    def create_message(
        body: Annotated[MessagesBody, Body(openapi_examples={"stream": _MESSAGE_EXAMPLE})],
        x_sluice_on_disconnect: str | None = Header(default=None, pattern="^(cancel|detach)$"),
    ) -> Any:
        return unreachable()

    @api.post(
        "/v1/messages/count_tokens",
        tags=["anthropic"],
        summary="A Messages request's input tokens, estimated as limits and budgets count them",
        response_model=TokenCount,
        responses=ERRORS,
    )
    def count_message_tokens(body: CountTokensBody) -> Any:
        return unreachable()

    @api.post(
        "/chat",
        tags=["chat"],
        summary="One chat turn, as Server-Sent Events in the app protocol",
        responses={200: {"content": SSE}, **ERRORS},
    )
    def chat(body: Annotated[TurnRequest, Body(openapi_examples={"new": _TURN_EXAMPLE})]) -> Any:
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
