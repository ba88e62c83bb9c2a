"""``POST /v1/moderations``: the configured guardrails, in OpenAI's moderation shape.

Clients check text before sending it with the same rules the gateway applies to input
(those that reach the caller's key). ``categories`` lists every category those rules
report, true where one matched; ``category_scores`` is 1.0 for a match (the rules are
exact, not scored). ``sluice.matches`` adds what OpenAI's shape has no room for: which
rule, its action, and where in the text.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import RequestError
from sluice.guard.guardrails import Guardrails
from sluice.http.gate import principal_of
from sluice.policy.limits import RateLimits, fail_closed

#: Texts per request, and characters per text: the rules run on the request path.
MAX_INPUTS = 32
MAX_CHARS = 32_768


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    text: str | None = None


class ModerationBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    input: (
        str
        | Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
        | Annotated[list[_Part], Field(min_length=1, max_length=MAX_INPUTS)]
    )
    model: str | None = None


def build_router(guardrails: Guardrails, limits: RateLimits) -> APIRouter:
    router = APIRouter(tags=["openai"])

    @router.post("/v1/moderations")
    async def moderate(
        request: Request, body: ModerationBody, response: Response
    ) -> dict[str, Any]:
        principal = principal_of(request.scope)
        if principal.key is not None:
            # A check is a request: it counts against the key's requests per minute
            # (the rules, and any moderation upstream, run for it).
            async with fail_closed():
                headers = await limits.request(principal.key)
            for name, value in headers:
                response.headers[name.decode()] = value.decode()
        texts = _texts(body.input)
        key = principal.key_names
        found = await guardrails.moderate(texts, key)
        categories = sorted(guardrails.categories(key))
        results = []
        for matches in found:
            hit = {m.category for m in matches}
            results.append(
                {
                    "flagged": bool(matches),
                    "categories": {c: c in hit for c in sorted({*categories, *hit})},
                    "category_scores": {c: float(c in hit) for c in sorted({*categories, *hit})},
                    "category_applied_input_types": {c: ["text"] for c in sorted(hit)},
                    "sluice": {
                        "matches": [
                            {
                                "rule": m.rule,
                                "action": m.action,
                                "category": m.category,
                                "start": m.start,
                                "end": m.end,
                            }
                            for m in matches
                        ]
                    },
                }
            )
        return {
            "id": "modr-" + secrets.token_hex(12),
            "model": body.model or "sluice-guardrails",
            "results": results,
        }

    return router


def _texts(value: str | list[str] | list[_Part]) -> list[str]:
    if isinstance(value, str):
        texts = [value]
    else:
        texts = [item if isinstance(item, str) else (item.text or "") for item in value]
    for position, text in enumerate(texts):
        if len(text) > MAX_CHARS:
            raise RequestError(
                f"Invalid value for 'input[{position}]': at most {MAX_CHARS} characters.",
                param=f"input[{position}]",
            )
    return texts
