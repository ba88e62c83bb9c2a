"""Parse and validate an OpenAI chat-completions request body.

The fields sluice acts on are validated strictly (wrong type -> 400 naming the field, as
OpenAI does); every other field is kept as sent and passed through to OpenAI-compatible
upstreams, so new API parameters work without a gateway release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sluice.errors import RequestError
from sluice.wire.storable import Unstorable, check_depth

#: Choices per request when the caller sets no lower limit.
MAX_CHOICES = 128

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


_Model = TypeVar("_Model", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _ContentPart(_Strict):
    type: Annotated[str, Field(min_length=1)]
    #: Required for text parts; other parts (images, audio…) pass through as sent.
    text: str | None = None

    @model_validator(mode="after")
    def _text_part_has_text(self) -> _ContentPart:
        if self.type in ("text", "input_text") and self.text is None:
            raise ValueError("a text part needs a 'text' string")
        return self


class _Message(_Strict):
    role: Role
    content: str | list[_ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _Function(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None


class _Tool(_Strict):
    type: Literal["function"]
    function: _Function


class _StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionBody(_Strict):
    model: Annotated[str, Field(min_length=1)]
    messages: Annotated[list[_Message], Field(min_length=1)]
    stream: bool | None = False
    stream_options: _StreamOptions | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: int | None = None
    user: str | None = None
    tools: list[_Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A validated chat-completions request.

    ``body`` is the client's JSON object as sent (minus nothing): providers read what
    they need from it and passthrough providers forward it.
    """

    model: str
    body: dict[str, Any]
    stream: bool
    include_usage: bool
    n: int

    @property
    def messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = self.body["messages"]
        return messages

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_completion_tokens") or self.body.get("max_tokens")
        return value if isinstance(value, int) else None


def parse_chat_request(raw: bytes, *, max_choices: int = MAX_CHOICES) -> ChatRequest:
    """Bytes of a request body -> ChatRequest, or RequestError (400) naming the field.
    ``n`` above ``max_choices`` (the gateway's ``max_choices`` setting) is refused."""
    return chat_request_from_body(json_object(raw), max_choices=max_choices)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object, nested no deeper than what can be
    written on to an upstream (orjson writes at most 255 levels); else RequestError."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.")
    checked_depth(body)
    return body


def checked_depth(body: dict[str, Any]) -> None:
    try:
        check_depth(body)
    except Unstorable as exc:
        param = exc.path.lstrip(".") or "body"
        raise RequestError(f"Invalid value for '{param}': {exc.problem}", param=param) from None


def validated(model: type[_Model], value: dict[str, Any], *, at: str = "") -> _Model:
    """``value`` as ``model``, or a RequestError naming the parameter at fault as the
    client wrote it (``at``: where ``value`` sits in the request, if not at its top)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = param_path(error["loc"], value, error["type"] == "missing")
        if at:
            param = at if param == "body" else f"{at}.{param}"
        raise RequestError(f"Invalid value for '{param}': {error['msg']}", param=param) from None


def chat_request_from_body(body: dict[str, Any], *, max_choices: int = MAX_CHOICES) -> ChatRequest:
    checked_depth(body)
    parsed = validated(ChatCompletionBody, body)
    if parsed.n is not None and parsed.n > max_choices:
        raise RequestError(
            f"Invalid value for 'n': at most {max_choices} choices per request.", param="n"
        )
    include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
    if parsed.stream_options is not None and not parsed.stream:
        raise RequestError(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return ChatRequest(
        model=parsed.model,
        body=body,
        stream=bool(parsed.stream),
        include_usage=include_usage,
        n=parsed.n or 1,
    )


def param_path(loc: tuple[int | str, ...], body: Any, missing: bool) -> str:
    # Pydantic adds union-member tags to loc ("str", "list[...]"); keep only the path
    # that exists in what the client sent (plus the absent key of a missing field).
    parts: list[str] = []
    current = body
    for part in loc:
        if isinstance(part, int) and isinstance(current, list) and part < len(current):
            parts.append(f"[{part}]")
            current = current[part]
        elif isinstance(part, str) and isinstance(current, dict) and part in current:
            parts.append(f".{part}" if parts else part)
            current = current[part]
        else:
            if missing and isinstance(part, str):
                parts.append(f".{part}" if parts else part)
            break
    return "".join(parts) or "body"
