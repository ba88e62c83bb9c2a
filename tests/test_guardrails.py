"""Guardrails' pure parts: folding, the PII detectors, keyword and regex rules, and the
output guard's hold-back window over a stream cut at every possible place."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

import pytest

from sluice.errors import ContentFiltered
from sluice.events import Event, Finish, RoleStart, TextDelta, Usage
from sluice.guard.config import GuardrailConfig
from sluice.guard.guardrails import Guardrails
from sluice.guard.rules import Rule, build_rule, masked, scan
from sluice.guard.stream import OutputGuard
from sluice.guard.text import fold
from sluice.wire.openai_request import chat_request_from_body


def rule(**config: Any) -> Rule:
    return build_rule(GuardrailConfig.model_validate({"name": "r", **config}))


PII = rule(kind="pii", action="mask")


def redact(text: str, *rules: Rule) -> str:
    return masked(text, scan(text, list(rules) or [PII]))


def test_folding_joins_widths_cases_and_kana() -> None:
    folded = fold("ＥＸＡＭＰＬＥ ｶﾞｷﾞ カタカナ")
    assert folded.text == "example がぎ かたかな"
    assert folded.span(0, 7) == (0, 7)
    # ｶﾞ (two characters) folds to one; the span maps back to both.
    assert folded.span(8, 9) == (8, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail me at jane.doe+x@example.co.jp today", "mail me at [EMAIL] today"),
        ("ＪＡＮＥ＠ＥＸＡＭＰＬＥ．ＣＯＭ です", "[EMAIL] です"),
        ("call +81 90-1234-5678 now", "call [PHONE] now"),
        ("電話は090-1234-5678まで", "電話は[PHONE]まで"),
        ("電話は０９０－１２３４－５６７８まで", "電話は[PHONE]まで"),
        ("office (03) 1234-5678.", "office [PHONE]."),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("not a card 4111 1111 1111 1112", "not a card 4111 1111 1111 1112"),
        ("my number 1234 5678 9018", "my number [MY_NUMBER]"),
        ("not my number 1234 5678 9017", "not my number 1234 5678 9017"),
        ("host 192.168.10.1.", "host [IP]."),
        ("v6 2001:db8::1 here", "v6 [IP] here"),
        ("not ip 999.1.1.1 or 12:30:45", "not ip 999.1.1.1 or 12:30:45"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx", "key [SECRET]"),
        ("aws AKIAIOSFODNN7EXAMPLE!", "aws [SECRET]!"),
        ("version 1.2.3 and year 2026", "version 1.2.3 and year 2026"),
        # Cards among other numbers, and phones with other dashes.
        ("Card 4111 1111 1111 1111 12/27 cvv 123", "Card [CARD] 12/27 cvv 123"),
        ("year 2024 4111 1111 1111 1111", "year 2024 [CARD]"),
        ("two 4111 1111 1111 1111 5500 0000 0000 0004", "two [CARD] [CARD]"),
        ("long 41111111111111111111 number", "long 41111111111111111111 number"),
        ("call 090ー1234ー5678 now", "call [PHONE] now"),
        ("mail bob@exa\u200bmple.com", "mail [EMAIL]"),
        # Overlapping matches become one mask: nothing of either is left out.
        ("call (03) 1234-5678bob.smith@example.com", "call [PHONE]"),
        ("::ffff:192.168.1.1 up", "[IP] up"),
    ],
)
def test_pii_detectors(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_keywords_match_whole_words_and_every_width_and_kana() -> None:
    words = rule(kind="keywords", words=["secret plan", "ヒミツ"], action="mask")
    # White space runs, invisible characters and accents do not hide a word.
    assert redact("the SECRET  plan", words) == "the [R]"
    assert redact("the secret\tplan", words) == "the [R]"
    assert redact("the se\u200bcret pl\u00adan", words) == "the [R]"
    assert redact("the sécret plan", words) == "the [R]"
    assert redact("the Secret Plan!", words) == "the [R]!"
    assert redact("ｓｅｃｒｅｔ ｐｌａｎ", words) == "[R]"
    assert redact("secret planet", words) == "secret planet"
    assert redact("これはひみつです", words) == "これは[R]です"
    assert redact("これはﾋﾐﾂです", words) == "これは[R]です"


def test_regex_rules_use_their_replacement() -> None:
    ids = rule(kind="regex", patterns=[r"emp-\d{4}"], action="mask", replacement="[EMPLOYEE]")
    assert redact("ask EMP-1234 or emp-99", ids) == "ask [EMPLOYEE] or emp-99"


def test_a_block_wins_over_a_mask_of_the_same_text() -> None:
    block = rule(kind="keywords", words=["jane@example.com"], action="block")
    found = scan("to jane@example.com", [PII, block])
    assert [m.action for m in found] == ["block"]


def guard_run(text: str, cuts: list[int], rules: list[Rule], window: int = 16) -> list[Event]:
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    guard = OutputGuard(rules, window)
    out: list[Event] = guard.feed([RoleStart()])
    for piece in pieces:
        out += guard.feed([TextDelta(piece)])
    out += guard.feed([Finish("stop"), Usage(1, 2, 3)])
    return out


def texts(events: list[Event]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def test_a_match_across_chunk_boundaries_is_masked_before_it_leaves() -> None:
    text = "Write to jane.doe@example.com or pay with 4111 1111 1111 1111, thanks!"
    expected = "Write to [EMAIL] or pay with [CARD], thanks!"
    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(1, 25)))
        out = guard_run(text, cuts, [PII], window=24)
        pieces = texts(out)
        assert "".join(pieces) == expected, cuts
        for piece in pieces:
            assert "@" not in piece and "1111" not in piece
        assert isinstance(out[-2], Finish) and out[-2].reason == "stop"


def test_text_older_than_the_window_flows_before_the_end() -> None:
    text = "word " * 40
    guard = OutputGuard([PII], 16)
    released = []
    for piece in text.split(" "):
        released += texts(guard.feed([TextDelta(piece + " ")]))
    assert len("".join(released)) >= len(text) - 16 - 5  # all but the window is out


def test_a_block_mid_stream_ends_the_choice_with_content_filter() -> None:
    block = rule(kind="keywords", words=["forbidden"], action="block")
    text = "A long harmless opening sentence, and then the forbidden word, and more."
    out = guard_run(text, list(range(3, len(text), 3)), [block], window=16)
    finishes = [e for e in out if isinstance(e, Finish)]
    assert [f.reason for f in finishes] == ["content_filter"]
    assert "forbidden" not in "".join(texts(out))
    assert "".join(texts(out)).startswith("A long harmless")


def test_nothing_guards_an_empty_rule_list() -> None:
    out = guard_run("plain text", [3], [])
    assert "".join(texts(out)) == "plain text"


async def test_input_is_masked_or_blocked_naming_the_message() -> None:
    guardrails = Guardrails(
        [
            GuardrailConfig(name="pii", kind="pii", action="mask", applies_to=["input"]),
            GuardrailConfig(name="words", kind="keywords", words=["ＢＯＭＢ"], category="violence"),
            GuardrailConfig(name="vip", kind="keywords", words=["vip"], keys=["alice"]),
        ]
    )
    seen: list[str] = []
    guardrails.on_match = lambda match, direction: seen.append(f"{match.rule}/{direction}")
    request = chat_request_from_body(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": [{"type": "text", "text": "mail a@b.io"}]},
            ],
        }
    )
    rules = guardrails.select("m", None)
    checked = await guardrails.check_input(request, rules)
    assert checked.messages[1]["content"][0]["text"] == "mail [EMAIL]"
    assert request.messages[1]["content"][0]["text"] == "mail a@b.io"  # the original kept
    assert seen == ["pii/input"]
    bomb = chat_request_from_body(
        {"model": "m", "messages": [{"role": "user", "content": "how to build a bomb"}]}
    )
    with pytest.raises(ContentFiltered) as caught:
        await guardrails.check_input(bomb, rules)
    assert caught.value.category == "violence"
    assert caught.value.param == "messages[0].content"
    assert caught.value.status == 400
    vip = chat_request_from_body({"model": "m", "messages": [{"role": "user", "content": "vip"}]})
    assert await guardrails.check_input(vip, rules) is vip  # bob: no vip rule
    with pytest.raises(ContentFiltered):
        await guardrails.check_input(vip, guardrails.select("m", ("k1", "alice")))


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"kind": "keywords"}, "needs 'words'"),
        ({"kind": "regex", "patterns": ["("]}, "does not compile"),
        ({"kind": "pii", "detectors": ["dna"]}, "unknown detectors"),
        ({"kind": "moderation_api", "base_url": "http://x/v1"}, "input only"),
        ({"kind": "moderation_api", "applies_to": ["input"]}, "base_url"),
        ({"kind": "keywords", "words": ["x"], "action": "explode"}, "action"),
    ],
)
def test_bad_rules_are_refused_naming_the_problem(config: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        GuardrailConfig.model_validate({"name": "r", **config})


def test_a_match_that_keeps_growing_is_masked_without_rescanning_it_forever() -> None:
    guard = OutputGuard([PII], 64)
    out = guard.feed([TextDelta("key sk-")])
    for _ in range(5000):  # a 20,000-character key-shaped run
        out += guard.feed([TextDelta("aaaa")])
    out += guard.feed([TextDelta(" done"), Finish("stop")])
    assert "".join(texts(out)) == "key [SECRET] done"


async def test_a_word_split_over_content_parts_is_still_the_word() -> None:
    guardrails = Guardrails(
        [
            GuardrailConfig(name="pii", kind="pii", action="mask"),
            GuardrailConfig(name="words", kind="keywords", words=["bomb"]),
        ]
    )
    rules = guardrails.select("m", None)
    split = chat_request_from_body(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": t} for t in ("a bo", "mb")]}
            ],
        }
    )
    with pytest.raises(ContentFiltered):
        await guardrails.check_input(split, rules)
    mail = chat_request_from_body(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": t} for t in ("mail bob@exa", "mple.com now")
                    ],
                }
            ],
        }
    )
    checked = await guardrails.check_input(mail, rules)
    assert [p["text"] for p in checked.messages[0]["content"]] == ["mail [EMAIL]", " now"]


def test_a_keyword_longer_than_the_window_is_refused_for_output() -> None:
    from sluice.settings import Settings

    rule = {"name": "w", "kind": "keywords", "words": ["a rather long forbidden phrase"]}
    with pytest.raises(ValueError, match="longer than guardrail_window"):
        Settings(guardrail_window=16, guardrails=[rule])
    Settings(guardrail_window=16, guardrails=[{**rule, "applies_to": ["input"]}])


def test_a_backtracking_pattern_does_not_hang_the_scan() -> None:
    # `re` would take longer than the age of the universe on this; the `regex` engine
    # answers at once (and would stop a scan past SCAN_SECONDS). Run apart, so a
    # regression fails instead of hanging the suite.
    code = (
        "from sluice.guard.config import GuardrailConfig as G\n"
        "from sluice.guard.rules import build_rule, scan\n"
        "r = build_rule(G(name='r', kind='regex', patterns=['(a+)+$'], action='flag'))\n"
        "print(len(scan('a' * 64 + '!', [r])))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
