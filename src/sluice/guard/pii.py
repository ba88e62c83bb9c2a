"""Offline detectors of personal data and secrets, on folded text (``guard/text.py``:
full-width digits and hyphens are plain ASCII there, letters lower case).

Each detector is a pattern that finds candidates and a check that keeps only the real
ones: payment cards pass the Luhn check, Japanese My Numbers their check digit, IP
addresses parse, phone numbers have a plausible number of digits. What each finds is
masked as its label (``[EMAIL]``, ``[PHONE]``, …).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    label: str
    #: A cheap test the text must pass before the pattern runs at all (most prose has
    #: no digit, no @, no colon): the guard runs on every chunk of every answer.
    gate: Callable[[str], bool]
    #: Where the candidates are, as (start, end) spans…
    spans: Spans
    #: … and which of them are real.
    valid: Callable[[str], bool]


Spans = Callable[[str], Iterator[tuple[int, int]]]


def _pattern(pattern: str) -> Spans:
    compiled = re.compile(pattern)

    def spans(text: str) -> Iterator[tuple[int, int]]:
        for found in compiled.finditer(text):
            yield found.span()

    return spans


#: Digits in groups, one space or hyphen between groups.
_GROUPS = re.compile(r"(?<![\d])\d+(?:[ \-]\d+)*")
_GROUP = re.compile(r"\d+")


def _grouped(sizes: range, valid: Callable[[str], bool], *, inside: bool = True) -> Spans:
    """Numbers written in groups (``4111 1111 1111 1111``), found inside longer runs of
    groups: a card after a year, before an expiry date, two cards in a row. Whole groups
    only, earliest first, then longest: a longer run of digits is not a card. Not
    ``inside``: only a whole run counts (twelve digits of a longer number are too often
    a valid My Number by chance)."""

    def spans(text: str) -> Iterator[tuple[int, int]]:
        for run in _GROUPS.finditer(text):
            if not inside:
                whole = _digits(run.group())
                if len(whole) in sizes and valid(whole):
                    yield run.span()
                continue
            groups = [g.span() for g in _GROUP.finditer(text, run.start(), run.end())]
            first = 0
            while first < len(groups):
                found = None
                digits = 0
                for last in range(first, len(groups)):
                    digits += groups[last][1] - groups[last][0]
                    if digits > sizes.stop - 1:
                        break
                    if digits in sizes:
                        candidate = text[groups[first][0] : groups[last][1]]
                        if valid(candidate):
                            found = last
                if found is None:
                    first += 1
                    continue
                yield groups[first][0], groups[found][1]
                first = found + 1

    return spans


_DIGIT = re.compile(r"\d")


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def _secretish(text: str) -> bool:
    return any(mark in text for mark in _SECRET_MARKS)


_SECRET_MARKS = ("sk-", "akia", "_", "xox", "aiza", "glpat-")


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def luhn(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    total = sum(digits[0::2]) + sum(sum(divmod(d * 2, 10)) for d in digits[1::2])
    return total % 10 == 0


def my_number_valid(number: str) -> bool:
    """The check digit of a 12-digit Individual Number (My Number)."""
    if len(number) != 12 or len(set(number)) == 1:
        return False
    body = [int(c) for c in number[:11]]
    total = 0
    for n, digit in enumerate(reversed(body), start=1):
        total += digit * (n + 1 if n <= 6 else n - 5)
    remainder = total % 11
    check = 0 if remainder <= 1 else 11 - remainder
    return check == int(number[11])


def _card(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and luhn(digits) and len(set(digits)) > 1


def _phone(text: str) -> bool:
    digits = _digits(text)
    if text.startswith("+"):
        return 8 <= len(digits) <= 15
    # Japanese numbers: 10 digits (fixed lines), 11 (mobile, 0120/0800 toll-free).
    return len(digits) in (10, 11)


def _ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "email",
        "[EMAIL]",
        lambda text: "@" in text,
        _pattern(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,24}"),
        lambda _: True,
    ),
    Detector(
        "secret",
        "[SECRET]",
        _secretish,
        _pattern(
            r"(?<![a-z0-9])(?:sk-(?:proj-|ant-|live-|test-)?[a-z0-9_\-]{20,}"
            r"|akia[0-9a-z]{16}|gh[pousr]_[a-z0-9]{36,}|xox[abpr]-[a-z0-9\-]{10,}"
            r"|aiza[0-9a-z_\-]{35}|glpat-[a-z0-9_\-]{20,})"
        ),
        lambda _: True,
    ),
    Detector(
        "card",
        "[CARD]",
        _has_digit,
        _grouped(range(13, 20), _card),
        lambda _: True,
    ),
    Detector(
        "my_number",
        "[MY_NUMBER]",
        _has_digit,
        _grouped(range(12, 13), lambda text: my_number_valid(_digits(text)), inside=False),
        lambda _: True,
    ),
    Detector(
        "phone",
        "[PHONE]",
        _has_digit,
        _pattern(
            r"\+\d{1,3}(?:[ \-.]?\(?\d{1,4}\)?){2,5}(?![\d])"
            r"|(?<![\d+])\(?0\d{1,4}\)?[ \-]?\d{1,4}[ \-]?\d{3,4}(?![\d])"
        ),
        _phone,
    ),
    Detector(
        "ip",
        "[IP]",
        lambda text: "." in text and _has_digit(text),
        _pattern(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)"),
        _ip,
    ),
    Detector(
        "ip",
        "[IP]",
        lambda text: "::" in text or text.count(":") >= 2,
        _pattern(r"(?<![0-9a-f:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![0-9a-f:])"),
        _ip,
    ),
)

NAMES = tuple(dict.fromkeys(d.name for d in DETECTORS))
