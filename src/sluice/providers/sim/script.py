"""What the simulated model says for a request, as steps of events, so the in-process
provider and the ``sluice sim`` server say the same.

A script is a list of steps; each step is emitted at one tick (one chunk per event on
the wire). Step 0 starts the choices, each middle step carries one token per choice that
still has one, the last step finishes every choice and reports usage. Pacing and faults
are applied by whoever plays the script.

Like a model, the answer is a draw: the request's ``seed`` fixes it, ``temperature`` 0
without a seed gives the same answer every time, and otherwise the caller draws a seed
(``draw_seed``), so a regenerated answer reads differently. Tool-call ids are always
fresh (``call_`` and 24 random letters and digits), never repeated in a conversation.
"""

from __future__ import annotations

import itertools
import re
import secrets
import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from sluice.events import (
    Event,
    Finish,
    ReasoningDelta,
    ResponseMeta,
    RoleStart,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from sluice.providers.sim.options import DEFAULT_MAX_LENGTH, SimOptions
from sluice.providers.sim.reasoning import think
from sluice.providers.sim.received import received
from sluice.providers.sim.response_format import StructuredOutput, structured_output
from sluice.providers.sim.response_format import answer as structured_answer
from sluice.providers.sim.text import compose, count_tokens, is_japanese, tokenize
from sluice.wire.inlined import without_files

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
_CALL_ID_ALPHABET = string.ascii_letters + string.digits
#: What the simulator reports as its build, as OpenAI reports ``fp_…`` for its own.
SYSTEM_FINGERPRINT = "fp_sluice_sim"
_SERVICE_TIERS = frozenset({"default", "flex", "priority", "scale", "fast"})


def draw_seed(body: dict[str, Any]) -> int | None:
    """A fresh seed for an answer that may vary: None when the request fixes its answer
    (its own ``seed``, or ``temperature`` 0, which a model answers greedily)."""
    if body.get("seed") is not None or body.get("temperature") == 0:
        return None
    return secrets.randbits(62)


def _compose(prompt: str, seed: int | None, style: str, length: int, *, drawn: bool) -> str:
    # A drawn seed never comes again: caching its answer would only evict the rest.
    if drawn or len(prompt) > _CACHED_CHARS or length * _CHARS_PER_TOKEN > _CACHED_CHARS:
        return compose(prompt, seed=seed, style=style, length=length)
    return _compose_cached(prompt, seed, style, length)


@lru_cache(maxsize=512)
def _compose_cached(prompt: str, seed: int | None, style: str, length: int) -> str:
    # Load tests send the same prompt thousands of times; the simulator must stay cheap
    # enough that a benchmark measures the gateway, not the upstream.
    return compose(prompt, seed=seed, style=style, length=length)


def _tokenize(text: str, *, drawn: bool = False) -> tuple[str, ...]:
    if drawn or len(text) > _CACHED_CHARS:
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
    body: dict[str, Any],
    options: SimOptions,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    seed: int | None = None,
) -> Script:
    """The script for ``body``. No choice carries more than ``max_length`` tokens (or
    the configured ``options.length``, if longer): echoes and tool results included.

    ``seed`` is ``draw_seed(body)``, for an answer the request leaves free; the
    request's own seed comes first, and with neither the answer is the one ``temperature``
    0 gives. Raises RequestError for a ``response_format`` the simulator refuses."""
    budget = max(max_length, options.length)
    messages: list[dict[str, Any]] = body.get("messages") or []
    n = body.get("n") or 1
    drawn = body.get("seed") is None and seed is not None
    seed = body.get("seed") if not drawn else seed
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    output = structured_output(body)
    choices = [
        _choice(messages, body, options, seed, index, max_tokens, stops, budget, output, drawn)
        for index in range(n)
    ]
    opening: list[Event] = [_meta(body)]
    opening += [
        RoleStart(index, tool_call=reason == "tool_calls")
        for index, (_, reason) in enumerate(choices)
    ]
    steps: list[list[Event]] = [opening]
    longest = max(len(pieces) for pieces, _ in choices)
    for position in range(longest):
        steps.append([pieces[position] for pieces, _ in choices if position < len(pieces)])
    completion = sum(len(pieces) for pieces, _ in choices)
    prompt = prompt_tokens(messages)
    thought = sum(isinstance(p, ReasoningDelta) for pieces, _ in choices for p in pieces)
    # Reasoning is part of the completion, and reported apart as OpenAI reports it.
    details = {"completion_tokens_details": {"reasoning_tokens": thought}} if thought else {}
    usage = Usage(prompt, completion, prompt + completion, details)
    steps.append([*(Finish(reason, index) for index, (_, reason) in enumerate(choices)), usage])
    return Script(steps, longest, usage)


def _meta(body: dict[str, Any]) -> ResponseMeta:
    tier = body.get("service_tier")
    # Like OpenAI: the tier that served the request ("auto" is served by "default").
    return ResponseMeta(SYSTEM_FINGERPRINT, tier if tier in _SERVICE_TIERS else "default")


def _choice(
    messages: list[dict[str, Any]],
    body: dict[str, Any],
    options: SimOptions,
    seed: int | None,
    index: int,
    max_tokens: int | None,
    stops: list[str],
    budget: int,
    output: StructuredOutput | None,
    drawn: bool,
) -> tuple[list[Event], str]:
    prompt = last_user_text(messages)
    choice_seed = None if seed is None and index == 0 else (seed or 0) + index
    limit = budget if max_tokens is None else min(budget, max_tokens)
    thoughts: list[Event] = []
    if options.reasoning:
        # The reasoning comes out of the same token limit as the answer, as a model's does.
        text = think(prompt, seed=choice_seed, length=min(options.reasoning, limit))
        thoughts = [ReasoningDelta(token, index) for token in _tokenize(text, drawn=drawn)]
        limit -= len(thoughts)
        if limit <= 0:
            return thoughts, "length"
    call = _tool_to_call(body, messages, prompt)
    if call is not None:
        return [*thoughts, *_tool_call_events(call, prompt, index, budget)], "tool_calls"
    if output is not None:
        # Structured output wins over the style: JSON that fits, whatever was asked.
        text = structured_answer(output, prompt, choice_seed)
    elif options.style == "echo":
        text = prompt
    elif messages and messages[-1].get("role") == "tool":
        text = "Here is what the tool returned: " + message_text(messages[-1])
    else:
        text = _answer(messages, prompt, choice_seed, options, drawn)
    reason = "stop"
    for marker in stops:
        cut = text.find(marker) if marker else -1
        if cut >= 0:
            text = text[:cut]
    # An echo of a megabyte prompt is cut to the budget before it is tokenized.
    cut_short = len(text) > limit * _CHARS_PER_TOKEN
    if cut_short:
        text = text[: limit * _CHARS_PER_TOKEN]
    tokens = list(_tokenize(text, drawn=drawn or output is not None))
    if len(tokens) > limit or cut_short:
        tokens = tokens[:limit]
        reason = "length"
    return [*thoughts, *(TextDelta(token, index) for token in tokens)], reason


def _answer(
    messages: list[dict[str, Any]],
    prompt: str,
    seed: int | None,
    options: SimOptions,
    drawn: bool,
) -> str:
    """The composed answer; a question that came with files starts by saying what came
    (about the question's own words, not the files')."""
    asked = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    typed = without_files(prompt)
    got = received(asked, japanese=is_japanese(typed)) if asked is not None else ""
    text = _compose(typed if got else prompt, seed, options.style, options.length, drawn=drawn)
    return f"{got}\n\n{text}" if got else text


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


def call_id() -> str:
    """A fresh tool-call id, in OpenAI's shape: clients match tool results to calls by
    id across a whole conversation, so one must never come twice."""
    return "call_" + "".join(secrets.choice(_CALL_ID_ALPHABET) for _ in range(24))


def _tool_call_events(tool: dict[str, Any], prompt: str, index: int, budget: int) -> list[Event]:
    schema = tool.get("parameters")
    encoded = orjson.dumps(_arguments(schema if isinstance(schema, dict) else {}, prompt))
    # Cut at the token budget, as a model stopping mid-call would.
    arguments = encoded[: budget * _ARGUMENT_PIECE].decode(errors="ignore")
    events: list[Event] = [
        ToolCallDelta(0, "", id=call_id(), name=tool["name"], index=index, type="function")
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
