"""What a database column can hold, and how deep a JSON value may nest — checked before
anything is stored or sent on.

Each of these parses fine and fails later, as a 500: PostgreSQL refuses NUL (``\\x00``)
in text; no UTF-8 column can hold an unpaired UTF-16 surrogate; orjson refuses to write
more than 255 levels of nesting although parsers read deeper, so a deeply nested object
that was stored can never be sent back (and breaks the listing it appears in, for every
reader). Pure: no I/O.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from pydantic import ValidationInfo

#: Nesting of stored JSON (a conversation's options): containers, the outermost counted.
MAX_DEPTH = 32
#: Nesting of a request body passed on to an upstream (tool schemas nest deeper than
#: stored options do); well below orjson's 255.
MAX_REQUEST_DEPTH = 64
#: Integers beyond this lose precision in JavaScript and in many JSON parsers.
MAX_JSON_INT = 2**53
#: Stored JSON's size limit when the caller gives none; ``Settings.max_json_bytes``
#: defaults to it (settings sit above the codecs, never the other way round).
DEFAULT_MAX_JSON_BYTES = 16384
#: Longest key shown in an error's path (keys can be as long as the body).
_KEY_SHOWN = 40


class Unstorable(ValueError):
    """A value no database can hold. ``path`` says where inside the checked value
    (``""`` for the value itself, ``".a[2].b"`` inside it); ``problem`` says what.

    A ``ValueError``, so a pydantic validator that raises it reports a validation error
    carrying it (``ctx["error"]``), and the edge can name the exact field."""

    def __init__(self, problem: str, path: str = "") -> None:
        super().__init__(f"{problem} (at '{path.lstrip('.')}')" if path else problem)
        self.problem = problem
        self.path = path


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


def check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise Unstorable(problem)
    return value


def check_json(value: Any, *, max_depth: int = MAX_DEPTH, max_bytes: int | None = None) -> Any:
    """``value`` if it can be stored as JSON and read back; else ``Unstorable``.

    Strings (keys too) must be storable text, numbers finite and within ±2**53, nesting
    at most ``max_depth`` containers, and the serialised form at most ``max_bytes``."""
    _walk(value, "", 1, max_depth, strict=True)
    if max_bytes is not None:
        size = len(orjson.dumps(value))
        if size > max_bytes:
            raise Unstorable(f"is {size} bytes as JSON; the limit is {max_bytes}")
    return value


def storable_json(value: Any, info: ValidationInfo) -> Any:
    """``check_json`` as a pydantic validator. The size limit comes from the validation
    context (``{"max_json_bytes": N}``) where the caller has one."""
    context = info.context if isinstance(info.context, dict) else {}
    limit = context.get("max_json_bytes", DEFAULT_MAX_JSON_BYTES)
    try:
        return check_json(value, max_bytes=limit)
    except Unstorable as exc:
        # Named from the field down, so the message says where: 'options.a.b'.
        raise Unstorable(exc.problem, f"{info.field_name or ''}{exc.path}") from None


def check_depth(value: Any, *, max_depth: int = MAX_REQUEST_DEPTH) -> Any:
    """``value`` if it nests at most ``max_depth`` containers deep; else ``Unstorable``
    naming the path of the first container too deep."""
    _walk(value, "", 1, max_depth, strict=False)
    return value


def _walk(value: Any, path: str, depth: int, max_depth: int, *, strict: bool) -> None:
    # Recursion is bounded by max_depth: the walk stops at the first container too deep.
    if isinstance(value, dict):
        if depth > max_depth:
            raise Unstorable(f"nests deeper than {max_depth} levels", path)
        for key, item in value.items():
            if not isinstance(key, str):
                raise Unstorable("has a key that is not a string", path)
            where = f"{path}.{_shown(key)}"
            if strict:
                problem = text_problem(key)
                if problem is not None:
                    raise Unstorable(f"has a key that {problem}", where)
            _walk(item, where, depth + 1, max_depth, strict=strict)
    elif isinstance(value, list):
        if depth > max_depth:
            raise Unstorable(f"nests deeper than {max_depth} levels", path)
        for index, item in enumerate(value):
            _walk(item, f"{path}[{index}]", depth + 1, max_depth, strict=strict)
    elif not strict:
        return
    elif isinstance(value, str):
        problem = text_problem(value)
        if problem is not None:
            raise Unstorable(problem, path)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Unstorable("is NaN or Infinity, which JSON cannot hold", path)
    elif isinstance(value, int):
        if abs(value) > MAX_JSON_INT:
            raise Unstorable("is an integer beyond 2**53 (not portable JSON)", path)
    else:
        raise Unstorable(f"is a {type(value).__name__}, which JSON cannot hold", path)


def _shown(key: str) -> str:
    # The path goes into an error body: what cannot be stored cannot be sent either.
    if len(key) > _KEY_SHOWN:
        key = key[:_KEY_SHOWN] + "…"
    if text_problem(key) is not None:
        key = key.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
    return key
