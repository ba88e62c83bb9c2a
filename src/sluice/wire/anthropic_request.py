"""Anthropic Messages request bodies -> chat-completions bodies (the way back, for the
``anthropic`` provider, is ``wire/anthropic_upstream.py``).

A ``POST /v1/messages`` body becomes the chat-completions body every edge turns its
input into (``ChatRequest``), so a Messages client reaches any model. Shapes as the
official SDK types them (``anthropic.types.MessageCreateParams``).

- ``system`` (a string or text blocks) -> a leading ``system`` message, and back.
- ``tool_result`` blocks -> ``tool`` messages (before the rest of their user turn, as
  chat wants them right after the call); assistant ``tool_use`` blocks -> ``tool_calls``.
- ``tools`` ``{name, description, input_schema}`` <-> function tools; ``tool_choice``
  ``auto|any|tool|none`` <-> ``auto|required|{function}|none``.
- Fields this module does not know pass through, as on the chat edge (the simulator's
  ``sim`` object, vendor parameters); thinking blocks in the history are dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import RequestError
from sluice.wire.openai_request import (
    ChatRequest,
    chat_request_from_body,
    checked_depth,
    json_object,
    validated,
)

#: OpenAI-compatible upstreams take at most this many stop sequences.
MAX_STOP_SEQUENCES = 4


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Message(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class _SystemBlock(_Strict):
    type: Literal["text"]
    text: str


class _Tool(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class _ToolChoice(_Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class _Metadata(_Strict):
    user_id: str | None = None


class MessagesBody(_Strict):
    model: Annotated[str, Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)]
    messages: Annotated[list[_Message], Field(min_length=1)]
    system: str | list[_SystemBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = None
    temperature: Annotated[float, Field(ge=0, le=1)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    tools: list[_Tool] | None = None
    tool_choice: _ToolChoice | None = None
    metadata: _Metadata | None = None


class CountTokensBody(MessagesBody):
    """``POST /v1/messages/count_tokens``: the same, without ``max_tokens``."""

    max_tokens: Annotated[int, Field(ge=1)] | None = None  # type: ignore[assignment]


#: What this module translates; everything else in a Messages body passes through.
_MESSAGES_FIELDS = frozenset(MessagesBody.model_fields) | {"stream_options", "n"}


def parse_messages_request(raw: bytes) -> ChatRequest:
    """Bytes of a Messages body -> the ChatRequest it means, or RequestError (400)."""
    return chat_request_from_body(messages_to_chat(json_object(raw)), max_choices=1)


def parse_count_tokens(raw: bytes) -> dict[str, Any]:
    """A count_tokens body -> the chat body whose prompt it counts."""
    return messages_to_chat(json_object(raw), counting=True)


def messages_to_chat(body: dict[str, Any], *, counting: bool = False) -> dict[str, Any]:
    """A Messages body -> the chat-completions body that asks the same."""
    checked_depth(body)
    parsed = validated(CountTokensBody if counting else MessagesBody, body)
    chat = {k: v for k, v in body.items() if k not in _MESSAGES_FIELDS}
    chat["model"] = parsed.model
    chat["messages"] = _system(parsed.system) + _history(parsed.messages)
    if parsed.max_tokens is not None:
        chat["max_tokens"] = parsed.max_tokens
    if parsed.stream is not None:
        chat["stream"] = parsed.stream
    if parsed.stop_sequences:
        if len(parsed.stop_sequences) > MAX_STOP_SEQUENCES:
            raise RequestError(
                f"Invalid value for 'stop_sequences': at most {MAX_STOP_SEQUENCES} sequences.",
                param="stop_sequences",
            )
        chat["stop"] = parsed.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if parsed.tools:
        chat["tools"] = [_chat_tool(tool) for tool in parsed.tools]
    if parsed.tool_choice is not None:
        choice = parsed.tool_choice
        if choice.type == "tool" and not choice.name:
            raise RequestError(
                "Invalid value for 'tool_choice.name': required when type is 'tool'.",
                param="tool_choice.name",
            )
        chat["tool_choice"] = _chat_tool_choice(choice)
        if choice.disable_parallel_tool_use:
            chat["parallel_tool_calls"] = False
    if parsed.metadata is not None and parsed.metadata.user_id:
        chat["user"] = parsed.metadata.user_id
    return chat


def _system(system: str | list[_SystemBlock] | None) -> list[dict[str, Any]]:
    if system is None:
        return []
    text = system if isinstance(system, str) else "\n".join(block.text for block in system)
    return [{"role": "system", "content": text}] if text else []


def _history(messages: list[_Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for position, message in enumerate(messages):
        where = f"messages[{position}].content"
        if isinstance(message.content, str):
            out.append({"role": message.role, "content": message.content})
        elif message.role == "user":
            out += _user_turn(message.content, where)
        else:
            out.append(_assistant_turn(message.content, where))
    return out


def _user_turn(blocks: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for position, block in enumerate(blocks):
        at = f"{where}[{position}]"
        kind = block.get("type")
        if kind == "tool_result":
            results.append(_tool_message(block, at))
        else:
            parts.append(_part(block, at))
    turn = results
    if parts:
        turn.append({"role": "user", "content": _content(parts)})
    return turn


def _assistant_turn(blocks: list[dict[str, Any]], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for position, block in enumerate(blocks):
        at = f"{where}[{position}]"
        kind = block.get("type")
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            calls.append(_tool_call(block, at))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # reasoning of an earlier turn: no chat upstream takes it back
        else:
            raise _unsupported(kind, at)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _part(block: dict[str, Any], at: str) -> dict[str, Any]:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": _text(block, at)}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}}
    raise _unsupported(kind, at)


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    # One text block is a plain string: what every chat upstream takes.
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _text(block: dict[str, Any], at: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise RequestError(f"Invalid value for '{at}.text': a string is required.", param=at)
    return text


def _image_url(source: Any, at: str) -> str:
    if isinstance(source, dict):
        if source.get("type") == "base64":
            media, data = source.get("media_type"), source.get("data")
            if isinstance(media, str) and isinstance(data, str):
                return f"data:{media};base64,{data}"
        elif source.get("type") == "url" and isinstance(source.get("url"), str):
            url: str = source["url"]
            return url
    raise RequestError(
        f"Invalid value for '{at}.source': a base64 or url image source is required.",
        param=f"{at}.source",
    )


def _tool_message(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise RequestError(
            f"Invalid value for '{at}.tool_use_id': a string is required.",
            param=f"{at}.tool_use_id",
        )
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        # Images in a tool result have no place in a chat tool message: text only.
        text = "".join(
            _text(part, f"{at}.content[{i}]")
            for i, part in enumerate(content)
            if isinstance(part, dict) and part.get("type") == "text"
        )
    else:
        raise RequestError(
            f"Invalid value for '{at}.content': a string or a list of blocks is required.",
            param=f"{at}.content",
        )
    if block.get("is_error") is True:
        text = "Error: " + text
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _tool_call(block: dict[str, Any], at: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str) or not isinstance(arguments, dict):
        raise RequestError(
            f"Invalid value for '{at}': a tool_use block needs an id, a name and an input object.",
            param=at,
        )
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
    }


def _unsupported(kind: Any, at: str) -> RequestError:
    return RequestError(
        f"Invalid value for '{at}.type': content blocks of type {kind!r} are not supported here.",
        param=f"{at}.type",
    )


def _chat_tool(tool: _Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        function["description"] = tool.description
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: _ToolChoice) -> str | dict[str, Any]:
    if choice.type == "tool":
        return {"type": "function", "function": {"name": choice.name}}
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]
