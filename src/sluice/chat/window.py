"""The history window: what of a conversation goes to the model each turn.

The system prompt and the new message always go; then as many of the most recent turns
as fit the model's context budget, oldest dropped first. Tokens are estimated (see
``sluice.tokens``): an offline gateway cannot fetch tiktoken's encodings, and an
estimate that errs high is safer than one that errs low.
"""

from __future__ import annotations

from typing import Any

from sluice.errors import RequestError
from sluice.tokens import estimate_message_tokens


def window(
    system: str | None,
    history: list[dict[str, Any]],
    new: dict[str, Any],
    *,
    budget: int,
) -> list[dict[str, Any]]:
    """The messages to send: ``system`` + the newest of ``history`` that fit + ``new``."""
    fixed = [{"role": "system", "content": system}] if system else []
    used = sum(estimate_message_tokens(m) for m in [*fixed, new]) + 3
    if used > budget:
        raise RequestError(
            f"The message is too long for this model's context: about {used} tokens with "
            f"the system prompt, and the limit is {budget}.",
            param="message",
            code="context_length_exceeded",
        )
    kept: list[dict[str, Any]] = []
    for message in reversed(history):
        cost = estimate_message_tokens(message)
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    # Never start the window on an assistant turn whose question was dropped.
    while kept and kept[0].get("role") != "user":
        kept.pop(0)
    return [*fixed, *kept, new]
