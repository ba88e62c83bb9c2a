"""Token estimates where the upstream gave no usage (a cancelled or failed answer) and
for the chat history window.

Upstream usage is always preferred. Without it, completion tokens are counted as the
token-bearing chunks received (OpenAI-compatible servers send about one token per chunk)
and prompt tokens are estimated at four characters per token (one per character for CJK
and other wide scripts) plus OpenAI's per-message framing. tiktoken's encodings are not
available offline, so no exact count is attempted. Estimates are marked
``{"estimated": true}`` in the usage details.
"""

from __future__ import annotations

from typing import Any

from sluice.events import Event, ReasoningDelta, TextDelta, ToolCallDelta, Usage

_PER_MESSAGE = 4
_CHARS_PER_TOKEN = 4
#: An image part, whatever its size: what OpenAI bills a 1024x1024 image at high detail
#: (its base64 is not text the model reads).
_PER_IMAGE = 765
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})


def estimate_text_tokens(text: str) -> int:
    # Non-ASCII text (CJK above all) runs about one token per character, not four.
    wide = sum(1 for ch in text if ord(ch) > 0x2E7F)
    narrow = len(text) - wide
    return wide + (narrow + _CHARS_PER_TOKEN - 1) // _CHARS_PER_TOKEN


def estimate_message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content")
    images = 0
    if isinstance(content, list):
        parts = [part for part in content if isinstance(part, dict)]
        images = sum(1 for part in parts if part.get("type") in _IMAGE_PARTS)
        content = "".join(part.get("text") or "" for part in parts)
    text = content if isinstance(content, str) else ""
    return _PER_MESSAGE + estimate_text_tokens(text) + images * _PER_IMAGE


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    return 3 + sum(estimate_message_tokens(message) for message in messages)


def estimate_usage(messages: list[dict[str, Any]], events: list[Event]) -> Usage:
    completion = sum(1 for e in events if type(e) in (TextDelta, ReasoningDelta, ToolCallDelta))
    prompt = estimate_prompt_tokens(messages)
    return Usage(prompt, completion, prompt + completion, {"estimated": True})
