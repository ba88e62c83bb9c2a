"""Parse a Responses API request (``POST /v1/responses``) and translate it to the
chat-completions body every provider already speaks.

The Responses fields sluice acts on are validated strictly, with errors naming the
Responses parameter (``input[2].call_id``, not the chat field it becomes). Unknown fields
pass through to the chat body, as on chat completions, so an upstream's own parameters
(and the simulator's ``sim``) keep working.

::

    parse_responses_request(raw) -> ResponsesRequest
        .input_messages   the new input as chat messages (stored for the next turn)
        .chat_body(history) -> dict   instructions + history + input, as chat completions
        .echo             the request's settings as the Response object repeats them
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import RequestError
from sluice.wire.openai_request import json_object, validated
from sluice.wire.storable import MAX_REQUEST_DEPTH, Unstorable, check_json

#: Responses fields that have no chat-completions counterpart: read here, never sent on.
_OWN_FIELDS = frozenset(
    {
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "max_output_tokens",
        "previous_response_id",
        "store",
        "stream",
        "background",
        "include",
        "truncation",
        "reasoning",
        "metadata",
        "conversation",
        "prompt",
        "max_tool_calls",
        "stream_options",
    }
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Part(_Strict):
    type: Annotated[str, Field(min_length=1)]
    text: str | None = None


class _Message(_Strict):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[_Part]


class _FunctionCall(_Strict):
    type: Literal["function_call"]
    call_id: Annotated[str, Field(min_length=1)]
    name: Annotated[str, Field(min_length=1)]
    arguments: str


class _FunctionCallOutput(_Strict):
    type: Literal["function_call_output"]
    call_id: Annotated[str, Field(min_length=1)]
    output: str | list[_Part]


class _FunctionTool(_Strict):
    type: Literal["function"]
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class _Format(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class _Text(_Strict):
    format: _Format | None = None


class _Reasoning(_Strict):
    effort: str | None = None


class ResponsesBody(_Strict):
    model: Annotated[str, Field(min_length=1)]
    input: str | Annotated[list[dict[str, Any]], Field(min_length=1)]
    instructions: str | None = None
    tools: list[_FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    text: _Text | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    previous_response_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    store: bool | None = None
    stream: bool | None = None
    background: bool | None = None
    parallel_tool_calls: bool | None = None
    #: OpenAI's bounds: 16 pairs, keys up to 64 characters, values up to 512.
    metadata: (
        Annotated[
            dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]],
            Field(max_length=16),
        ]
        | None
    ) = None
    reasoning: _Reasoning | None = None
    user: str | None = None


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    model: str
    stream: bool
    store: bool
    previous_response_id: str | None
    #: The new input as chat messages (without the instructions, which a next turn
    #: does not inherit).
    input_messages: list[dict[str, Any]]
    instructions: str | None
    #: Chat-completions fields translated from the Responses ones, plus passed-through
    #: unknown fields; ``chat_body`` adds the messages.
    chat_fields: dict[str, Any]
    #: What the Response object repeats of the request.
    echo: dict[str, Any] = field(default_factory=dict)

    def chat_body(self, history: list[dict[str, Any]]) -> dict[str, Any]:
        """The chat-completions body: instructions, the stored conversation the previous
        response ended, then this input."""
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        return {**self.chat_fields, "messages": [*messages, *history, *self.input_messages]}


def parse_responses_request(raw: bytes) -> ResponsesRequest:
    body = json_object(raw)
    parsed = validated(ResponsesBody, body)
    if parsed.store is not False:
        _storable(body)
    if parsed.background:
        raise RequestError(
            "Background responses are not supported by this gateway; stream the response "
            "and resume it at /v1/streams/{id} if the connection drops.",
            param="background",
        )
    messages = (
        [{"role": "user", "content": parsed.input}]
        if isinstance(parsed.input, str)
        else input_messages(parsed.input)
    )
    return ResponsesRequest(
        model=parsed.model,
        stream=bool(parsed.stream),
        store=parsed.store is not False,
        previous_response_id=parsed.previous_response_id,
        input_messages=messages,
        instructions=parsed.instructions,
        chat_fields=_chat_fields(body, parsed),
        echo=_echo(body, parsed),
    )


def input_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses input items -> chat messages. Consecutive function calls become one
    assistant message with several tool calls (as chat completions has them)."""
    messages: list[dict[str, Any]] = []
    for position, item in enumerate(items):
        kind = item.get("type", "message")
        where = f"input[{position}]"
        if kind == "message":
            message = validated(_Message, item, at=where)
            messages.append({"role": message.role, "content": _content(item["content"], where)})
        elif kind == "function_call":
            call = validated(_FunctionCall, item, at=where)
            tool_call = {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(tool_call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})
        elif kind == "function_call_output":
            output = validated(_FunctionCallOutput, item, at=where)
            content = output.output if isinstance(output.output, str) else _text(item["output"])
            messages.append({"role": "tool", "tool_call_id": output.call_id, "content": content})
        elif kind == "reasoning":
            continue  # a previous answer's reasoning: chat upstreams take none back
        else:
            raise RequestError(
                f"Invalid value for '{where}.type': input items of type {kind!r} are not "
                "supported; use messages, function_call and function_call_output items.",
                param=f"{where}.type",
            )
    return messages


def output_messages(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A Response's output items -> the chat messages a next turn sends back. Built as
    they are, not validated: they are the upstream's, and a call with an empty name is
    still part of the conversation."""
    messages: list[dict[str, Any]] = []
    for item in output:
        if item.get("type") == "message":
            text = "".join(
                part.get("text", "") for part in item.get("content", ()) if "text" in part
            )
            messages.append({"role": "assistant", "content": text})
        elif item.get("type") == "function_call":
            call = {
                "id": item.get("call_id") or "",
                "type": "function",
                "function": {"name": item.get("name") or "", "arguments": item.get("arguments")},
            }
            last = messages[-1] if messages else None
            if last is not None and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    return messages


def _storable(body: dict[str, Any]) -> None:
    """What a stored response keeps must be storable text (no NUL, no lone surrogate)."""
    for name in ("input", "instructions"):
        try:
            check_json(body.get(name), max_depth=MAX_REQUEST_DEPTH)
        except Unstorable as exc:
            param = f"{name}{exc.path}"
            raise RequestError(f"Invalid value for '{param}': {exc.problem}", param=param) from None


def _content(content: str | list[dict[str, Any]], where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for position, part in enumerate(content):
        kind = part["type"]
        if kind in ("input_text", "output_text", "text"):
            if not isinstance(part.get("text"), str):
                param = f"{where}.content[{position}].text"
                message = f"Invalid value for '{param}': a string is required."
                raise RequestError(message, param=param)
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            param = f"{where}.content[{position}].type"
            raise RequestError(
                f"Invalid value for '{param}': content parts of type {kind!r} are not supported.",
                param=param,
            )
    return parts


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p.get("text") or "" for p in parts)


def _chat_fields(body: dict[str, Any], parsed: ResponsesBody) -> dict[str, Any]:
    fields = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    if parsed.tools:
        fields["tools"] = [
            {
                "type": "function",
                "function": tool.model_dump(exclude={"type"}, exclude_none=True, by_alias=True),
            }
            for tool in parsed.tools
        ]
    choice = parsed.tool_choice
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise RequestError(
                "Invalid value for 'tool_choice': use 'none', 'auto', 'required' or "
                '{"type": "function", "name": ...}.',
                param="tool_choice",
            )
        fields["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        fields["tool_choice"] = choice
    if parsed.max_output_tokens is not None:
        fields["max_completion_tokens"] = parsed.max_output_tokens
    if parsed.text is not None and parsed.text.format is not None:
        response_format = _response_format(parsed.text.format)
        if response_format is not None:
            fields["response_format"] = response_format
    if parsed.reasoning is not None and parsed.reasoning.effort is not None:
        fields["reasoning_effort"] = parsed.reasoning.effort
    return fields


def _response_format(form: _Format) -> dict[str, Any] | None:
    if form.type == "text":
        return None
    if form.type == "json_object":
        return {"type": "json_object"}
    if not form.name or form.schema_ is None:
        raise RequestError(
            "Invalid value for 'text.format': a json_schema format needs 'name' and 'schema'.",
            param="text.format",
        )
    schema: dict[str, Any] = {"name": form.name, "schema": form.schema_}
    if form.strict is not None:
        schema["strict"] = form.strict
    if form.description is not None:
        schema["description"] = form.description
    return {"type": "json_schema", "json_schema": schema}


#: What a Response object states of a request that said nothing (OpenAI's defaults).
DEFAULT_ECHO: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "temperature": 1.0,
    "top_p": 1.0,
    "tool_choice": "auto",
    "tools": [],
    "text": {"format": {"type": "text"}},
    "store": True,
    "background": False,
    "truncation": "disabled",
    "user": None,
}


def _echo(body: dict[str, Any], parsed: ResponsesBody) -> dict[str, Any]:
    """The request's settings as a Response object states them (OpenAI's defaults
    where the request said nothing)."""
    return {
        "instructions": parsed.instructions,
        "max_output_tokens": parsed.max_output_tokens,
        "metadata": parsed.metadata or {},
        "parallel_tool_calls": parsed.parallel_tool_calls is not False,
        "previous_response_id": parsed.previous_response_id,
        "temperature": parsed.temperature if parsed.temperature is not None else 1.0,
        "top_p": parsed.top_p if parsed.top_p is not None else 1.0,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "text": body.get("text") or {"format": {"type": "text"}},
        "store": parsed.store is not False,
        "background": False,
        "truncation": "disabled",
        "user": parsed.user,
    }
