"""Conversation titles from the first exchange, without spending tokens on them.

The first question, whitespace folded, cut at a word boundary near 60 characters
(markdown decoration and code fences dropped). Deterministic, instant, and in the
user's own language.
"""

from __future__ import annotations

import re

_LIMIT = 60


def title_from(question: str) -> str:
    text = re.sub(r"```.*?(```|$)", " ", question, flags=re.DOTALL)
    text = re.sub(r"[#*_`>\[\]]+", " ", text)
    text = " ".join(text.split())
    if not text:
        return "New chat"
    if len(text) <= _LIMIT:
        return text
    cut = text[:_LIMIT]
    space = cut.rfind(" ")
    if space > _LIMIT // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:") + "…"
