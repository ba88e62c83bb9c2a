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
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Detector:
    name: str
    label: str
    #: A cheap test the text must pass before the pattern runs at all (most prose has
    #: no digit, no @, no colon): the guard runs on every chunk of every answer.
    gate: Callable[[str], bool]
    pattern: re.Pattern[str]
    valid: Callable[[str], bool]


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


#: A number stands alone: no digit (or digit and separator) right before or after it,
#: so the first twelve digits of a card are not a My Number.
_START = r"(?<![\d])(?<![\d][ \-])"
_END = r"(?![ \-]?\d)"

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "email",
        "[EMAIL]",
        lambda text: "@" in text,
        re.compile(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,24}"),
        lambda _: True,
    ),
    Detector(
        "secret",
        "[SECRET]",
        _secretish,
        re.compile(
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
        re.compile(rf"{_START}\d(?:[ \-]?\d){{12,18}}{_END}"),
        _card,
    ),
    Detector(
        "my_number",
        "[MY_NUMBER]",
        _has_digit,
        re.compile(rf"{_START}\d{{4}}[ \-]?\d{{4}}[ \-]?\d{{4}}{_END}"),
        lambda text: my_number_valid(_digits(text)),
    ),
    Detector(
        "phone",
        "[PHONE]",
        _has_digit,
        re.compile(
            r"\+\d{1,3}(?:[ \-.]?\(?\d{1,4}\)?){2,5}(?![\d])"
            r"|(?<![\d+])\(?0\d{1,4}\)?[ \-]?\d{1,4}[ \-]?\d{3,4}(?![\d])"
        ),
        _phone,
    ),
    Detector(
        "ip",
        "[IP]",
        lambda text: "." in text and _has_digit(text),
        re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d]|\.\d)"),
        _ip,
    ),
    Detector(
        "ip",
        "[IP]",
        lambda text: "::" in text or text.count(":") >= 2,
        re.compile(r"(?<![0-9a-f:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![0-9a-f:])"),
        _ip,
    ),
)

NAMES = tuple(dict.fromkeys(d.name for d in DETECTORS))
