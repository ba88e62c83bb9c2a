"""Which requests may share an answer, and under which key. Pure: no I/O.

A request's cache key is a hash of what decides its answer — model, messages, tools,
tool choice, response format and every sampling parameter — serialised canonically (keys
sorted, ``1.0`` written as ``1``, ``null`` fields dropped), together with its scope (one
key's requests, or everyone's). What only decides how the answer is delivered
(``stream``, ``stream_options``), who asks (``user``, ``metadata``) and transport headers
are not part of it.

Eligibility (``plan``): a deterministic request (``temperature`` 0), a model configured to
cache, or a request that asks (``Cache-Control: max-age=N``). ``no-cache`` fetches a fresh
answer and stores it (refresh); ``no-store`` neither reads nor writes nor shares (bypass).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from sluice.errors import RequestError

_SECONDS = re.compile(r"[0-9]{1,9}")

#: Body fields that do not change the answer.
DELIVERY_ONLY = frozenset({"stream", "stream_options", "user", "metadata"})

#: What a response says it was: served from the cache, stored after, neither, or fresh
#: on request.
Outcome = Literal["hit", "miss", "bypass", "refresh"]


@dataclass(frozen=True, slots=True)
class CacheControl:
    """A request's ``Cache-Control`` directives that matter here."""

    no_store: bool = False
    no_cache: bool = False
    #: ``max-age=N``: cache this answer for N seconds (an opt-in).
    max_age: float | None = None


def parse_cache_control(value: str | None) -> CacheControl:
    """``Cache-Control`` (RFC 9111 §5.2.1) -> CacheControl; unknown directives are
    ignored, a malformed ``max-age`` is a 400 naming the header."""
    if not value:
        return CacheControl()
    no_store = no_cache = False
    max_age: float | None = None
    for directive in value.split(","):
        name, _, argument = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            no_cache = True
        elif name == "max-age":
            text = argument.strip().strip('"')
            # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
            if not _SECONDS.fullmatch(text):
                raise RequestError(
                    "Cache-Control max-age must be a whole number of seconds.",
                    param="cache-control",
                )
            max_age = float(int(text))
    return CacheControl(no_store=no_store, no_cache=no_cache, max_age=max_age)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do for one request: whether to read the cache, write it, and join an
    identical answer in flight; ``key`` is None when none of them applies."""

    outcome: Outcome
    key: str | None
    ttl: float
    read: bool
    write: bool
    share: bool


BYPASS = Plan("bypass", None, 0.0, read=False, write=False, share=False)


def plan(
    body: dict[str, Any],
    scope: str,
    control: CacheControl,
    *,
    model_cache: bool | None,
    ttl: float,
    max_ttl: float,
    cache_on: bool,
    coalesce: bool,
) -> Plan:
    """The plan for a request ``body`` from principal ``scope`` ("*" when everyone
    shares). ``model_cache`` is the model's setting; ``ttl`` its default lifetime."""
    if control.no_store or model_cache is False:
        return BYPASS
    asked = control.max_age is not None and control.max_age > 0
    deterministic = _number(body.get("temperature")) == 0
    if not (deterministic or model_cache or asked):
        return BYPASS
    if not cache_on and not coalesce:
        return BYPASS
    lifetime = min(control.max_age, max_ttl) if asked and control.max_age else ttl
    key = request_key(body, scope)
    if not cache_on:
        return Plan("bypass", key, 0.0, read=False, write=False, share=True)
    return Plan(
        "refresh" if control.no_cache else "miss",
        key,
        lifetime,
        read=not control.no_cache,
        write=True,
        share=coalesce,
    )


def request_key(body: dict[str, Any], scope: str) -> str:
    """The cache key of ``body`` asked by ``scope``: 64 hex digits."""
    canonical = {k: _canonical(v) for k, v in body.items() if k not in DELIVERY_ONLY}
    data = orjson.dumps(
        {k: v for k, v in canonical.items() if v is not None}, option=orjson.OPT_SORT_KEYS
    )
    digest = hashlib.sha256(scope.encode() + b"\0" + data)
    return digest.hexdigest()


def _canonical(value: Any) -> Any:
    # 0 and 0.0 (and 1 and 1.0) ask for the same answer.
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
