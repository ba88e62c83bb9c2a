"""The simulated model's text: deterministic markdown answers and the streaming tokenizer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.providers.sim import vocabulary as vocab
from sluice.providers.sim.text import compose, count_tokens, is_japanese, tokenize

PROMPT = "How does rate limiting work in Redis?"
JAPANESE_PROMPT = "レート制限の仕組みを教えてください"
HIRAGANA = re.compile("[\u3040-\u309f]")
FENCE = re.compile(r"^```", re.MULTILINE)
TABLE_RULE = re.compile(r"^\| :?-{3,}:? \|", re.MULTILINE)
LIST_ITEM = re.compile(r"^(?:[-*]|\d+\.) \S", re.MULTILINE)


def prose_lines(text: str) -> list[str]:
    """Lines outside fenced code blocks."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside and line.strip():
            lines.append(line)
    return lines


# --- determinism ---


def test_same_arguments_give_the_same_answer() -> None:
    for style in ("markdown", "hostile"):
        first = compose(PROMPT, seed=7, style=style, max_tokens=120, length=400)
        assert first == compose(PROMPT, seed=7, style=style, max_tokens=120, length=400)


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_answer_is_the_same_in_another_process(hash_seed: str) -> None:
    # A different PYTHONHASHSEED would change the answer if anything leaned on hash().
    code = (
        "import json, sys; from sluice.providers.sim.text import compose; "
        "print(json.dumps([compose(p, seed=3) for p in sys.argv[1:]]))"
    )
    prompts = [PROMPT, JAPANESE_PROMPT]
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", code, *prompts], env=env, capture_output=True, check=True
    )
    assert json.loads(out.stdout) == [compose(p, seed=3) for p in prompts]


def test_golden_prefix() -> None:
    # Pins the derivation (sha256 -> random.Random -> vocabulary). Update deliberately if
    # the vocabulary changes; an unexpected change here means answers moved between runs.
    assert compose(PROMPT, seed=1)[:80] == GOLDEN_PREFIX


GOLDEN_PREFIX = "Here's a practical overview of *rate limiting*, with an example you can adapt. A"


def test_prompts_and_seeds_change_the_answer() -> None:
    answers = {compose(PROMPT, seed=seed) for seed in range(10)}
    answers |= {compose(f"{PROMPT} {n}") for n in range(10)}
    answers.add(compose(PROMPT))
    answers.add(compose(PROMPT, style="hostile"))
    assert len(answers) == 22


# --- content ---


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (PROMPT, ["rate limiting", "Redis"]),
        ("Explain how the sluice gateway streams tokens over SSE", ["sluice", "tokens", "SSE"]),
        ("Write a Rust function that parses TOML configuration", ["Rust", "TOML", "function"]),
        ("Pythonの非同期処理について説明して", ["Python", "非同期処理"]),
    ],
)
def test_answer_talks_about_the_prompt(prompt: str, words: list[str]) -> None:
    for seed in range(5):
        answer = compose(prompt, seed=seed)
        for word in words:
            assert word.lower() in answer.lower(), (seed, word)


def test_markdown_features_appear_across_seeds() -> None:
    answers = "\n\n".join(compose(PROMPT, seed=seed) for seed in range(6))
    assert FENCE.search(answers)
    assert TABLE_RULE.search(answers)
    assert LIST_ITEM.search(answers)
    assert re.search(r"^#{2,3} \S", answers, re.MULTILINE)
    assert re.search(r"\[[^\]]+\]\(https://example\.com/[^)]+\)", answers)
    assert re.search(r"`[^`\n]+`", answers)
    assert re.search(r"\*\*[^*\n]+\*\*", answers)
    assert re.search(r"^> \S", answers, re.MULTILINE)
    assert re.search(r"^ {2,3}- \S", answers, re.MULTILINE), "a nested list"


def test_moderate_answers_have_code_and_usually_a_table_or_list() -> None:
    answers = [compose(PROMPT, seed=seed) for seed in range(30)]
    assert all(FENCE.search(a) for a in answers)
    structured = [a for a in answers if TABLE_RULE.search(a) or LIST_ITEM.search(a)]
    assert len(structured) >= 0.75 * len(answers)


def test_code_blocks_come_in_several_languages_and_mention_the_topic() -> None:
    languages: set[str] = set()
    for seed in range(40):
        answer = compose("Explain background jobs", seed=seed)
        for language, body in re.findall(r"^```(\w+)\n(.*?)^```$", answer, re.S | re.M):
            languages.add(language)
            assert "background" in body.lower()
    assert len(languages) >= 5
    assert languages <= set(vocab.CODE)


def test_a_language_named_in_the_prompt_is_used_for_code() -> None:
    for seed in range(5):
        assert "```rust\n" in compose("Write a Rust function that parses TOML", seed=seed)


@pytest.mark.parametrize("length", [30, 120, 300, 900])
def test_code_fences_are_balanced(length: int) -> None:
    for prompt in (PROMPT, JAPANESE_PROMPT):
        for seed in range(15):
            answer = compose(prompt, seed=seed, length=length)
            assert len(FENCE.findall(answer)) % 2 == 0


def test_japanese_prompt_gets_a_japanese_answer() -> None:
    assert is_japanese(JAPANESE_PROMPT)
    for seed in range(5):
        answer = compose(JAPANESE_PROMPT, seed=seed)
        prose = [line for line in prose_lines(answer) if not line.startswith("|")]
        japanese = [line for line in prose if HIRAGANA.search(line) or is_japanese(line)]
        assert len(japanese) >= 0.8 * len(prose)
        assert HIRAGANA.search(prose[0])
        assert "レート制限" in answer
        assert "".join(tokenize(answer)) == answer
        headers = re.findall(r"^(\|.*)\n\| :?-", answer, re.MULTILINE)
        assert all(is_japanese(header) for header in headers)


def test_english_prompt_gets_no_japanese() -> None:
    for seed in range(5):
        assert not is_japanese(compose(PROMPT, seed=seed))


@pytest.mark.parametrize("length", [50, 80, 150, 300, 1000, 2500])
@pytest.mark.parametrize("style", ["markdown", "hostile"])
def test_length_is_within_tolerance(length: int, style: str) -> None:
    for prompt in (PROMPT, JAPANESE_PROMPT, "hi", ""):
        for seed in range(5):
            size = count_tokens(compose(prompt, seed=seed, style=style, length=length))
            assert 0.85 * length <= size <= 1.15 * length, (prompt, seed, size)


def test_zero_length_is_empty() -> None:
    assert compose(PROMPT, length=0) == ""


@pytest.mark.parametrize("max_tokens", [0, 1, 7, 64, 250])
@pytest.mark.parametrize("prompt", [PROMPT, JAPANESE_PROMPT])
def test_max_tokens_truncates_exactly(max_tokens: int, prompt: str) -> None:
    for style in ("markdown", "hostile"):
        full = compose(prompt, seed=4, style=style)
        cut = compose(prompt, seed=4, style=style, max_tokens=max_tokens)
        assert count_tokens(cut) == max_tokens
        assert full.startswith(cut)


def test_max_tokens_above_the_answer_changes_nothing() -> None:
    assert compose(PROMPT, seed=1, length=100, max_tokens=5000) == compose(
        PROMPT, seed=1, length=100
    )


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="style"):
        compose(PROMPT, style="plain")
    with pytest.raises(ValueError, match="negative"):
        compose(PROMPT, length=-1)
    with pytest.raises(ValueError, match="negative"):
        compose(PROMPT, max_tokens=-1)


def test_a_lone_surrogate_in_the_prompt_is_fine() -> None:
    # json.loads turns "\\ud800" into one; the answer must still be deterministic.
    assert compose("\ud800 rate limiting") == compose("\ud800 rate limiting")


# --- hostile ---

HOSTILE_MARKERS = {
    "script": r"<script>alert\(1\)</script>",
    "onerror": r"<img src=x onerror=alert\(1\)>",
    "javascript link": r"\]\(javascript:alert\(1\)\)",
    "iframe": r"<iframe ",
    "entities": r"&(?:lt|#\d+);",
    "quote in title": r'\]\(https://example\.com/\S* "[^)]*"',
    "anchor": r'<a href="javascript:',
    "data url": r"\]\(data:",
}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("length", [250, 300, 1000])
def test_hostile_answer_carries_every_construct(seed: int, length: int) -> None:
    answer = compose(PROMPT, seed=seed, style="hostile", length=length)
    for name, pattern in HOSTILE_MARKERS.items():
        assert re.search(pattern, answer), name
    assert len(FENCE.findall(answer)) % 2 == 1, "the last fence is left open"
    bold_lines = [line for line in answer.splitlines() if line.startswith("**")]
    assert any(line.count("**") % 2 == 1 for line in bold_lines), "an unterminated **bold"


def test_hostile_answer_mixes_in_ordinary_text() -> None:
    answer = compose(PROMPT, seed=0, style="hostile")
    first = answer.split("\n\n")[0]
    assert "<" not in first
    assert "rate limiting" in first.lower()
    assert HIRAGANA.search(compose(JAPANESE_PROMPT, seed=0, style="hostile").split("\n\n")[0])


# --- tokenizer ---


def test_tokenize_splits_like_a_bpe_tokenizer() -> None:
    assert tokenize("Hello, world!") == ["Hello", ",", " world", "!"]
    assert tokenize("internationalization") == ["intern", "ationa", "lizati", "on"]
    assert tokenize("a\n\nb") == ["a", "\n\n", "b"]
    assert tokenize("x   y") == ["x", "  ", " y"]
    assert tokenize("```python") == ["```", "python"]
    assert tokenize("レート制限です。") == ["レート", "制限", "です", "。"]


def test_english_prose_is_about_four_characters_a_token() -> None:
    prose = " ".join(s.replace("{", "").replace("}", "") for s in vocab.ENGLISH.grammar["sentence"])
    assert 3.5 <= len(prose) / count_tokens(prose) <= 5


def test_is_japanese() -> None:
    assert is_japanese("ひらがな")
    assert is_japanese("カタカナ")
    assert is_japanese("漢字")
    assert is_japanese("mostly English with one 字")
    assert not is_japanese("plain English, café, 한국어")
    assert not is_japanese("")


@given(st.text())
def test_tokens_join_back_to_the_text(text: str) -> None:
    pieces = tokenize(text)
    assert "".join(pieces) == text
    assert all(pieces)
    assert count_tokens(text) == len(pieces)


@given(st.text(), st.data())
def test_a_token_prefix_keeps_its_count(text: str, data: st.DataObject) -> None:
    # What makes max_tokens exact: cutting at a token boundary re-tokenizes the same way.
    pieces = tokenize(text)
    k = data.draw(st.integers(0, len(pieces)))
    assert tokenize("".join(pieces[:k])) == pieces[:k]


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x3040, max_codepoint=0x30FF)
        | st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
    )
)
def test_japanese_pieces_are_short(text: str) -> None:
    assert all(len(piece.strip()) <= 3 for piece in tokenize(text))


@given(st.text(max_size=200), st.integers(0, 2**64) | st.none(), st.integers(0, 400))
def test_compose_never_breaks_on_any_prompt(prompt: str, seed: int | None, length: int) -> None:
    answer = compose(prompt, seed=seed, length=length)
    assert answer == compose(prompt, seed=seed, length=length)
    assert len(FENCE.findall(answer)) % 2 == 0
    cut = compose(prompt, seed=seed, length=length, max_tokens=length // 2)
    assert count_tokens(cut) == min(length // 2, count_tokens(answer))


def test_every_slot_in_the_vocabulary_resolves() -> None:
    supplied = {"t", "T", "id", "link", "num", "ms", "lang", "index", "ident", "Ident", "topic"}
    assert set(vocab.ENGLISH.grammar) == set(vocab.JAPANESE.grammar)
    templates = [
        t for v in (vocab.ENGLISH, vocab.JAPANESE) for ts in v.grammar.values() for t in ts
    ]
    templates += [c for v in (vocab.ENGLISH, vocab.JAPANESE) for s in v.tables for c in s.cells]
    templates += [c for v in (vocab.ENGLISH, vocab.JAPANESE) for s in v.tables for c in s.headers]
    templates += [t for group in vocab.HOSTILE_REQUIRED + vocab.HOSTILE_EXTRAS for t in group]
    templates += [t for ts in vocab.CODE.values() for t in ts]
    for template in templates:
        for name in re.findall(r"\{(\w+)\}", template):
            assert name in supplied or name in vocab.ENGLISH.grammar, (name, template)
