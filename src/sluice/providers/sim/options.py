"""Knobs of the simulated model: pacing, answer style and injected faults.

They come from a model's ``options`` table and may be overridden per request with a
``sim`` object in the body (how fault tests and demos drive it through the gateway).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from sluice.errors import RequestError

STYLES = ("markdown", "echo", "hostile")


@dataclass(frozen=True, slots=True)
class SimOptions:
    #: markdown (varied answers), echo (repeats the last user message), hostile.
    style: str = "markdown"
    ttft_ms: float = 250.0
    #: 0 streams as fast as the consumer reads.
    tokens_per_second: float = 60.0
    #: Random extra gap between tokens, as a fraction of the mean gap (0..1).
    jitter: float = 0.2
    #: Answer length in tokens (before max_tokens).
    length: int = 250
    #: Fail before the first token with this HTTP status…
    fail_status: int | None = None
    #: …only on the first N attempts carrying the same ``key`` (None: every attempt).
    fail_times: int | None = None
    retry_after: float | None = None
    #: Drop the connection after this many tokens.
    drop_after: int | None = None
    #: Send a chunk that is not JSON after this many tokens.
    malformed_after: int | None = None
    #: Stall this long after ``stall_after`` tokens (before the first when 0).
    stall_ms: float = 0.0
    stall_after: int = 0
    #: Groups attempts for ``fail_times`` and the per-key statistics.
    key: str | None = None

    @classmethod
    def parse(cls, table: Any, *, where: str = "sim") -> SimOptions:
        return cls().merged(table, where=where)

    def merged(self, table: Any, *, where: str = "sim") -> SimOptions:
        """These options with ``table``'s values on top; RequestError names a bad key."""
        if table is None:
            return self
        if not isinstance(table, dict):
            raise RequestError(f"'{where}' must be an object", param=where)
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in table.items():
            if key not in known:
                raise RequestError(f"unknown simulator option '{where}.{key}'", param=where)
            changes[key] = _coerce(key, value, f"{where}.{key}")
        result = replace(self, **changes)
        if result.style not in STYLES:
            raise RequestError(
                f"'{where}.style' must be one of {', '.join(STYLES)}", param=f"{where}.style"
            )
        return result


_NUMBERS = {
    "ttft_ms",
    "tokens_per_second",
    "jitter",
    "retry_after",
    "stall_ms",
}
_INTEGERS = {"length", "fail_status", "fail_times", "drop_after", "malformed_after", "stall_after"}


def _coerce(key: str, value: Any, where: str) -> Any:
    if value is None and key not in ("style", "length", "stall_after"):
        return None
    if key in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise RequestError(f"'{where}' must be a non-negative number", param=where)
        return float(value)
    if key in _INTEGERS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise RequestError(f"'{where}' must be a non-negative integer", param=where)
        return value
    if not isinstance(value, str):
        raise RequestError(f"'{where}' must be a string", param=where)
    return value
