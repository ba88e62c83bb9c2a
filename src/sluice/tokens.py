"""Token estimates where the upstream gave no usage (a cancelled or failed answer).

Upstream usage is always preferred. When there is none, completion tokens are counted as
the token-bearing chunks received (OpenAI-compatible servers send about one token per
chunk), and prompt tokens are estimated at four characters per token plus OpenAI's
per-message framing. Estimates are marked ``{"estimated": true}`` in the usage details.
"""

from __future__ import annotations

from typing import Any

from sluice.events import Event, ReasoningDelta, TextDelta, ToolCallDelta, Usage

_PER_MESSAGE = 4
_CHARS_PER_TOKEN = 4


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    total = 3
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        text = content if isinstance(content, str) else ""
        total += _PER_MESSAGE + (len(text) + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN
    return total


def estimate_usage(messages: list[dict[str, Any]], events: list[Event]) -> Usage:
    completion = sum(1 for e in events if type(e) in (TextDelta, ReasoningDelta, ToolCallDelta))
    prompt = estimate_prompt_tokens(messages)
    return Usage(prompt, completion, prompt + completion, {"estimated": True})
