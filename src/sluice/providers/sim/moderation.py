"""The simulator's ``/v1/moderations``: deterministic verdicts for tests, offline.

A text is flagged in a category when it contains one of that category's trigger words
(folded: any width or case); scores are 0.97 for a trigger and a small value derived
from the text otherwise, so the same text always gets the same answer.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

#: OpenAI's categories, with the words that trigger each here.
TRIGGERS: dict[str, tuple[str, ...]] = {
    "harassment": ("idiot", "loser"),
    "hate": ("hateful",),
    "illicit": ("counterfeit", "steal a car"),
    "self-harm": ("self-harm",),
    "sexual": ("explicit",),
    "violence": ("bomb", "kill", "爆弾"),
}


def moderate(texts: list[str], model: str = "omni-moderation-latest") -> dict[str, Any]:
    results = []
    for text in texts:
        folded = unicodedata.normalize("NFKC", text).casefold()
        digest = hashlib.sha256(text.encode()).digest()
        scores = {
            category: 0.97 if any(word in folded for word in words) else round(digest[i] / 25500, 6)
            for i, (category, words) in enumerate(TRIGGERS.items())
        }
        flags = {category: score >= 0.5 for category, score in scores.items()}
        results.append(
            {
                "flagged": any(flags.values()),
                "categories": flags,
                "category_scores": scores,
                "category_applied_input_types": {
                    category: ["text"] for category, flagged in flags.items() if flagged
                },
            }
        )
    return {
        "id": "modr-sim-" + hashlib.sha256("".join(texts).encode()).hexdigest()[:16],
        "model": model,
        "results": results,
    }
