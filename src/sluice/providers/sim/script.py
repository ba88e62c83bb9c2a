"""What the simulated model says for a request, as steps of events — pure and
deterministic, so the in-process provider and the ``sluice sim`` server say the same.

A script is a list of steps; each step is emitted at one tick (one chunk per event on
the wire). Step 0 starts the choices, each middle step carries one token per choice that
still has one, the last step finishes every choice and reports usage. Pacing and faults
are applied by whoever plays the script.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from sluice.events import Event, Finish, RoleStart, TextDelta, ToolCallDelta, Usage
from sluice.providers.sim.options import SimOptions
from sluice.providers.sim.text import compose, count_tokens, tokenize

# Per-message framing tokens, as OpenAI counts them for chat models.
_MESSAGE_OVERHEAD = 4
_ARGUMENT_PIECE = 8


@lru_cache(maxsize=512)
def _compose(prompt: str, seed: int | None, style: str, length: int) -> str:
    # Load tests send the same prompt thousands of times; the simulator must stay cheap
    # enough that a benchmark measures the gateway, not the upstream.
    return compose(prompt, seed=seed, style=style, length=length)


@lru_cache(maxsize=512)
def _tokenize(text: str) -> tuple[str, ...]:
    return tuple(tokenize(text))


@dataclass(frozen=True, slots=True)
class Script:
    steps: list[list[Event]]
    #: Tokens carried by middle steps (for faults counted in tokens).
    token_steps: int
    usage: Usage


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return 3 + sum(count_tokens(message_text(m)) + _MESSAGE_OVERHEAD for m in messages)


def build_script(body: dict[str, Any], options: SimOptions) -> Script:
    messages: list[dict[str, Any]] = body.get("messages") or []
    n = body.get("n") or 1
    seed = body.get("seed")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    choices = [
        _choice(messages, body, options, seed, index, max_tokens, stops) for index in range(n)
    ]
    steps: list[list[Event]] = [[RoleStart(index) for index in range(n)]]
    longest = max(len(pieces) for pieces, _ in choices)
    for position in range(longest):
        steps.append([pieces[position] for pieces, _ in choices if position < len(pieces)])
    completion = sum(len(pieces) for pieces, _ in choices)
    prompt = prompt_tokens(messages)
    usage = Usage(prompt, completion, prompt + completion)
    steps.append([*(Finish(reason, index) for index, (_, reason) in enumerate(choices)), usage])
    return Script(steps, longest, usage)


def _choice(
    messages: list[dict[str, Any]],
    body: dict[str, Any],
    options: SimOptions,
    seed: int | None,
    index: int,
    max_tokens: int | None,
    stops: list[str],
) -> tuple[list[Event], str]:
    prompt = last_user_text(messages)
    call = _tool_to_call(body, messages, prompt)
    if call is not None:
        return _tool_call_events(call, prompt, seed, index), "tool_calls"
    choice_seed = None if seed is None and index == 0 else (seed or 0) + index
    if options.style == "echo":
        text = prompt
    elif messages and messages[-1].get("role") == "tool":
        text = "Here is what the tool returned: " + message_text(messages[-1])
    else:
        text = _compose(prompt, choice_seed, options.style, options.length)
    reason = "stop"
    for marker in stops:
        cut = text.find(marker) if marker else -1
        if cut >= 0:
            text = text[:cut]
    tokens = list(_tokenize(text))
    if max_tokens is not None and len(tokens) > max_tokens:
        tokens = tokens[:max_tokens]
        reason = "length"
    return [TextDelta(token, index) for token in tokens], reason


def _tool_to_call(
    body: dict[str, Any], messages: list[dict[str, Any]], prompt: str
) -> dict[str, Any] | None:
    offered = [t.get("function") for t in body.get("tools") or () if isinstance(t, dict)]
    tools: list[dict[str, Any]] = [t for t in offered if isinstance(t, dict) and t.get("name")]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if messages and messages[-1].get("role") == "tool":
        return None  # answer with the tool's result instead of calling again
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t["name"] == wanted), tools[0])
    if choice == "required":
        return tools[0]
    words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
    for tool in tools:
        if any(len(part) > 3 and part in words for part in tool["name"].lower().split("_")):
            return tool
    return None


def _tool_call_events(
    tool: dict[str, Any], prompt: str, seed: int | None, index: int
) -> list[Event]:
    arguments = orjson.dumps(_arguments(tool.get("parameters") or {}, prompt)).decode()
    digest = hashlib.sha256(f"{tool['name']}|{prompt}|{seed}|{index}".encode()).hexdigest()
    events: list[Event] = [
        ToolCallDelta(0, "", id=f"call_{digest[:24]}", name=tool["name"], index=index)
    ]
    for start in range(0, len(arguments), _ARGUMENT_PIECE):
        events.append(ToolCallDelta(0, arguments[start : start + _ARGUMENT_PIECE], index=index))
    return events


def _arguments(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    properties = schema.get("properties") or {}
    names = re.findall(r"\b[A-Z][a-zA-Z]+", prompt)
    subject = names[-1] if names else (prompt.split() or ["example"])[-1].strip("?.!,")
    result: dict[str, Any] = {}
    for name, spec in properties.items():
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type")
        if spec.get("enum"):
            result[name] = spec["enum"][0]
        elif kind in ("integer", "number"):
            result[name] = 1
        elif kind == "boolean":
            result[name] = True
        elif kind == "array":
            result[name] = []
        elif kind == "object":
            result[name] = {}
        else:
            result[name] = subject
    return result
