"""The request headers that steer the response cache, read once for every edge.

- ``Cache-Control``: ``no-store`` (bypass the cache), ``no-cache`` (a fresh answer,
  stored), ``max-age=N`` (cache this answer for N seconds, an opt-in);
- ``X-Sluice-Cache-Replay``: a cached answer ``immediate`` (the default) or ``paced`` at
  the timing it was generated with.
"""

from __future__ import annotations

from sluice.cache.key import CacheControl, parse_cache_control
from sluice.cache.responses import REPLAY_MODES
from sluice.errors import RequestError
from sluice.http.asgi import Scope, header


def cache_control(scope: Scope) -> CacheControl:
    # A list header: every line counts (a proxy may add its own), joined as RFC 9110
    # says, so a `no-store` on any line wins.
    lines = [bytes(v) for name, v in scope["headers"] if name == b"cache-control"]
    return parse_cache_control(b", ".join(lines).decode("latin-1") if lines else None)


def paced_replay(scope: Scope) -> bool:
    value = _text(header(scope, b"x-sluice-cache-replay"))
    if value is None:
        return False
    if value not in REPLAY_MODES:
        raise RequestError(
            "X-Sluice-Cache-Replay must be 'immediate' or 'paced'.",
            param="x-sluice-cache-replay",
        )
    return value == "paced"


def _text(value: bytes | None) -> str | None:
    return value.decode("latin-1") if value is not None else None
