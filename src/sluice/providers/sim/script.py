"""What the simulated model says for a request, as steps of events — pure and
deterministic, so the in-process provider and the ``sluice sim`` server say the same.

A script is a list of steps; each step is emitted at one tick (one chunk per event on
the wire). Step 0 starts the choices, each middle step carries one token per choice that
still has one, the last step finishes every choice and reports usage. Pacing and faults
are applied by whoever plays the script.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from sluice.events import Event, Finish, RoleStart, TextDelta, ToolCallDelta, Usage
from sluice.providers.sim.options import DEFAULT_MAX_LENGTH, SimOptions
from sluice.providers.sim.text import compose, count_tokens, tokenize

# Per-message framing tokens, as OpenAI counts them for chat models.
_MESSAGE_OVERHEAD = 4
_ARGUMENT_PIECE = 8
#: Longest text a token can be in `tokenize` (a six-letter word and its space), so a
#: text this many times longer than the token budget holds at least the budget.
_CHARS_PER_TOKEN = 8
#: Prompts and answers up to this long are cached; a cache entry holds the text and its
#: tokens, so 512 long ones would be hundreds of megabytes.
_CACHED_CHARS = 8192
#: A tool call's arguments: this many properties, each value at most this long.
_MAX_ARGUMENTS = 64
_MAX_SUBJECT = 64


def _compose(prompt: str, seed: int | None, style: str, length: int) -> str:
    if len(prompt) > _CACHED_CHARS or length * _CHARS_PER_TOKEN > _CACHED_CHARS:
        return compose(prompt, seed=seed, style=style, length=length)
    return _compose_cached(prompt, seed, style, length)


@lru_cache(maxsize=512)
def _compose_cached(prompt: str, seed: int | None, style: str, length: int) -> str:
    # Load tests send the same prompt thousands of times; the simulator must stay cheap
    # enough that a benchmark measures the gateway, not the upstream.
    return compose(prompt, seed=seed, style=style, length=length)


def _tokenize(text: str) -> tuple[str, ...]:
    if len(text) > _CACHED_CHARS:
        return tuple(tokenize(text))
    return _tokenize_cached(text)


@lru_cache(maxsize=512)
def _tokenize_cached(text: str) -> tuple[str, ...]:
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


def build_script(
    body: dict[str, Any], options: SimOptions, *, max_length: int = DEFAULT_MAX_LENGTH
) -> Script:
    """The script for ``body``. No choice carries more than ``max_length`` tokens (or
    the configured ``options.length``, if longer): echoes and tool results included."""
    budget = max(max_length, options.length)
    messages: list[dict[str, Any]] = body.get("messages") or []
    n = body.get("n") or 1
    seed = body.get("seed")
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    choices = [
        _choice(messages, body, options, seed, index, max_tokens, stops, budget)
        for index in range(n)
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
    budget: int,
) -> tuple[list[Event], str]:
    prompt = last_user_text(messages)
    call = _tool_to_call(body, messages, prompt)
    if call is not None:
        return _tool_call_events(call, prompt, seed, index, budget), "tool_calls"
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
    # An echo of a megabyte prompt is cut to the budget before it is tokenized.
    limit = budget if max_tokens is None else min(budget, max_tokens)
    cut_short = len(text) > limit * _CHARS_PER_TOKEN
    if cut_short:
        text = text[: limit * _CHARS_PER_TOKEN]
    tokens = list(_tokenize(text))
    if len(tokens) > limit or cut_short:
        tokens = tokens[:limit]
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
        function = choice.get("function")
        wanted = function.get("name") if isinstance(function, dict) else None
        return next((t for t in tools if t["name"] == wanted), tools[0])
    if choice == "required":
        return tools[0]
    words = set(re.findall(r"[a-z0-9]+", prompt.lower()))
    for tool in tools:
        if any(len(part) > 3 and part in words for part in tool["name"].lower().split("_")):
            return tool
    return None


def _tool_call_events(
    tool: dict[str, Any], prompt: str, seed: int | None, index: int, budget: int
) -> list[Event]:
    schema = tool.get("parameters")
    encoded = orjson.dumps(_arguments(schema if isinstance(schema, dict) else {}, prompt))
    # Cut at the token budget, as a model stopping mid-call would.
    arguments = encoded[: budget * _ARGUMENT_PIECE].decode(errors="ignore")
    digest = hashlib.sha256(f"{tool['name']}|{prompt}|{seed}|{index}".encode()).hexdigest()
    events: list[Event] = [
        ToolCallDelta(0, "", id=f"call_{digest[:24]}", name=tool["name"], index=index)
    ]
    for start in range(0, len(arguments), _ARGUMENT_PIECE):
        events.append(ToolCallDelta(0, arguments[start : start + _ARGUMENT_PIECE], index=index))
    return events


def _arguments(schema: dict[str, Any], prompt: str) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        properties = {}
    names = re.findall(r"\b[A-Z][a-zA-Z]+", prompt)
    subject = names[-1] if names else (prompt.split() or ["example"])[-1].strip("?.!,")
    subject = subject[:_MAX_SUBJECT]
    result: dict[str, Any] = {}
    for name, spec in itertools.islice(properties.items(), _MAX_ARGUMENTS):
        spec = spec if isinstance(spec, dict) else {}
        kind = spec.get("type")
        enum = spec.get("enum")
        if isinstance(enum, list) and enum:
            result[name] = enum[0]
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
