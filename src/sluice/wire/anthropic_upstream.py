"""Chat-completions bodies -> Anthropic Messages bodies: what the ``anthropic``
provider sends its upstream (the way in is ``wire/anthropic_request.py``).

``system``/``developer`` messages -> ``system``; ``tool`` messages -> ``tool_result``
blocks (consecutive turns of one role merge, as Anthropic wants them alternating);
assistant ``tool_calls`` -> ``tool_use`` blocks; function tools -> ``{name,
description, input_schema}``; ``tool_choice`` ``auto|required|{function}|none`` ->
``auto|any|tool|none``. OpenAI-only fields are dropped; unknown ones pass through.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluice.errors import RequestError

#: ``max_tokens`` for an upstream call when the chat request set none (Messages needs one).
DEFAULT_MAX_TOKENS = 4096

#: OpenAI fields with no Messages counterpart: dropped, not passed on to be refused.
_CHAT_ONLY = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "store",
        "modalities",
        "audio",
        "prediction",
        "reasoning_effort",
        "service_tier",
        "web_search_options",
        "metadata",
        "functions",
        "function_call",
    }
)


def chat_to_messages(
    body: dict[str, Any], *, model: str, max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """A validated chat-completions body -> the Messages body for an Anthropic upstream
    (streamed). Unknown fields pass through, as to an OpenAI-compatible upstream."""
    out = {k: v for k, v in body.items() if k not in _CHAT_ONLY}
    system, messages = _anthropic_history(body["messages"])
    out["model"] = model
    out["max_tokens"] = body.get("max_completion_tokens") or body.get("max_tokens") or max_tokens
    out["messages"] = messages
    out["stream"] = True
    if system:
        out["system"] = system
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if isinstance(out.get("temperature"), int | float):
        out["temperature"] = min(float(out["temperature"]), 1.0)  # OpenAI's 0..2, Claude's 0..1
    tools = body.get("tools")
    if tools:
        out["tools"] = [_anthropic_tool(tool["function"]) for tool in tools]
    choice = _anthropic_tool_choice(body.get("tool_choice"))
    if body.get("parallel_tool_calls") is False and tools:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None and tools:
        out["tool_choice"] = choice
    if isinstance(body.get("user"), str):
        out["metadata"] = {"user_id": body["user"]}
    return out


def _anthropic_history(
    messages: list[dict[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_plain_text(message.get("content")))
            continue
        if role == "assistant":
            turn, blocks = "assistant", _assistant_blocks(message)
        elif role in ("tool", "function"):
            turn, blocks = "user", [_tool_result(message)]
        else:
            turn, blocks = "user", _user_blocks(message.get("content"))
        if not blocks:
            continue
        # Consecutive turns of one role merge: tool results and the next question
        # are one user turn to Anthropic.
        if out and out[-1]["role"] == turn:
            out[-1]["content"] += blocks
        else:
            out.append({"role": turn, "content": blocks})
    return "\n\n".join(text for text in system if text), out


def _plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return ""


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        kind = part.get("type")
        if kind in ("text", "input_text") and part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                blocks.append({"type": "image", "source": _image_source(url)})
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "base64", "media_type": media, "data": data}
    return {"type": "url", "url": url}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    text = _plain_text(message.get("content"))
    blocks: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": _arguments(function.get("arguments")),
            }
        )
    return blocks


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        raise RequestError(
            "A tool call's arguments are not a JSON object; Anthropic upstreams need one.",
            param="messages",
        ) from None
    if not isinstance(value, dict):
        raise RequestError(
            "A tool call's arguments are not a JSON object; Anthropic upstreams need one.",
            param="messages",
        )
    return value


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id") or message.get("name") or "",
        "content": _plain_text(message.get("content")),
    }


def _anthropic_tool(function: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description") is not None:
        tool["description"] = function["description"]
    return tool


def _anthropic_tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return {"type": "tool", "name": function["name"]}
    return None
