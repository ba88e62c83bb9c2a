"""Model options typed by a user: ``--option KEY=JSON`` and ``/option KEY=JSON``."""

from __future__ import annotations

from typing import Any

import orjson

from sluice.cli.backend import USAGE, CliError


def parse_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``: VALUE is JSON (``0.2``, ``true``, ``{"k": 1}``) or else a string.
    An empty VALUE is ``None``, which removes the option."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise CliError(
            f"option {text!r} is not KEY=VALUE (for example max_tokens=200 or "
            "sim='{\"tokens_per_second\": 10}')",
            USAGE,
        )
    raw = raw.strip()
    if not raw:
        return key, None
    try:
        return key, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return key, raw


def parse_options(items: list[str] | None) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_option(item)
        if value is None:
            options.pop(key, None)
        else:
            options[key] = value
    return options
