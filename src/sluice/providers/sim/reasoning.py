"""What the simulated model thinks before it answers, when it is asked to reason.

A model variant with ``reasoning`` in its options (``sim-think``), or a request whose
``sim`` object sets it, streams this text as reasoning (``delta.reasoning_content`` on
the wire, as vLLM and DeepSeek send it) before the answer: plain sentences about the
prompt's subject, in its language, about ``length`` tokens long. Deterministic like the
answer: the same prompt and seed give the same thoughts. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import random

from sluice.providers.sim.text import count_tokens, is_japanese, subject, tokenize

_ENGLISH = (
    "The user asks about {t}.",
    "First I should say what {t} is, in one or two sentences.",
    "A short example would make {t} concrete.",
    "They may want to compare the options, so a table could help.",
    "I should mention the trade-offs: latency, cost and how hard it is to operate.",
    "Keep it practical; no need to cover the history of {t}.",
    "Check the edge cases: empty input, a slow upstream, a client that disconnects.",
    "Then end with what to try next.",
    "Let me make sure the numbers are consistent before I write them down.",
    "Code should be short and runnable.",
)
_JAPANESE = (
    "ユーザーは{t}について聞いている。",
    "まず{t}が何かを一、二文で説明する。",
    "短い例があると{t}が分かりやすい。",
    "選択肢を比べたいかもしれないので、表が役に立つ。",
    "トレードオフ（遅延、コスト、運用の手間）にも触れる。",
    "実用的にまとめる。",
    "空の入力や遅い上流、途中で切れる接続も確認する。",
    "最後に次に試すことを書く。",
)


def think(prompt: str, *, seed: int | None, length: int) -> str:
    """About ``length`` tokens of reasoning about ``prompt`` (never more)."""
    if length <= 0:
        return ""
    japanese = is_japanese(prompt)
    topic = subject(prompt) or ("この質問" if japanese else "this question")
    key = f"think\0{seed!r}\0{prompt}".encode("utf-8", "surrogatepass")
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
    templates = _JAPANESE if japanese else _ENGLISH
    # The first thought restates the question; the rest come in a drawn order.
    order = [templates[0], *rng.sample(templates[1:], len(templates) - 1)]
    joiner = "" if japanese else " "
    sentences: list[str] = []
    used = 0
    for position in range(length):
        sentence = order[position % len(order)].format(t=topic)
        cost = count_tokens(sentence) + (1 if joiner and sentences else 0)
        if sentences and used + cost > length:
            break
        # A paragraph break every four thoughts, as a model's notes have.
        sentences.append(("\n" if joiner and position and position % 4 == 0 else "") + sentence)
        used += cost
    text = joiner.join(sentences).replace(" \n", "\n")
    return "".join(tokenize(text)[:length])
