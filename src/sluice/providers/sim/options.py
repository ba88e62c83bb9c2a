"""Knobs of the simulated model: pacing, answer style and injected faults.

They come from a model's ``options`` table and may be overridden per request with a
``sim`` object in the body (how fault tests and demos drive it through the gateway).
Whatever a request asks for is bounded by ``SimLimits``: the work (tokens) and the
waiting (delays) a knob scales, so one request cannot make the simulator — in the
gateway's own process — build a million tokens or hold a task for a day.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from sluice.errors import RequestError
from sluice.settings import Settings

STYLES = ("markdown", "echo", "hostile")
#: The gateway's default ``max_sim_length``, and ``sluice sim``'s ``--max-length``.
DEFAULT_MAX_LENGTH: int = Settings.model_fields["max_sim_length"].default


@dataclass(frozen=True, slots=True)
class SimLimits:
    """The most one request's ``sim`` object may ask for."""

    #: Tokens per answer (``max_sim_length``); echoes and tool results are cut there too.
    max_length: int = DEFAULT_MAX_LENGTH
    #: One wait (``ttft_ms``, ``stall_ms``, ``retry_after``), in milliseconds.
    max_wait_ms: float = 60_000.0
    #: Slowest pacing: below this many tokens per second (other than 0, unpaced) a
    #: 20,000-token answer would take hours.
    min_tokens_per_second: float = 1.0
    #: Characters of ``key`` (the statistics keep one entry per key).
    max_key_length: int = 200
    #: Choices (``n``) per request, for ``sluice sim`` (the gateway checks its own).
    max_choices: int = Settings.model_fields["max_choices"].default


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
    #: Reasoning before the answer, in tokens (``delta.reasoning_content``; 0: none).
    reasoning: int = 0

    @classmethod
    def parse(
        cls, table: Any, *, where: str = "sim", limits: SimLimits | None = None
    ) -> SimOptions:
        return cls().merged(table, where=where, limits=limits)

    def merged(
        self, table: Any, *, where: str = "sim", limits: SimLimits | None = None
    ) -> SimOptions:
        """These options with ``table``'s values on top; RequestError names a bad key or
        a value beyond ``limits`` (None: the operator's own configuration, unchecked)."""
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
            if limits is not None:
                _bounded(key, changes[key], f"{where}.{key}", limits)
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
_INTEGERS = {
    "reasoning",
    "length",
    "fail_status",
    "fail_times",
    "drop_after",
    "malformed_after",
    "stall_after",
}


def _coerce(key: str, value: Any, where: str) -> Any:
    if value is None and key not in ("style", "length", "stall_after", "reasoning"):
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


_WAITS_MS = {"ttft_ms": 1.0, "stall_ms": 1.0, "retry_after": 1000.0}


def _bounded(key: str, value: Any, where: str, limits: SimLimits) -> None:
    if value is None:
        return
    if key in ("length", "reasoning") and value > limits.max_length:
        raise RequestError(
            f"'{where}' must be at most {limits.max_length} tokens (max_sim_length)", param=where
        )
    if key in _WAITS_MS and value * _WAITS_MS[key] > limits.max_wait_ms:
        most = limits.max_wait_ms / _WAITS_MS[key]
        raise RequestError(f"'{where}' must be at most {most:g}", param=where)
    if key == "tokens_per_second" and 0 < value < limits.min_tokens_per_second:
        raise RequestError(
            f"'{where}' must be 0 (unpaced) or at least {limits.min_tokens_per_second:g}",
            param=where,
        )
    if key == "jitter" and value > 1:
        raise RequestError(f"'{where}' must be between 0 and 1", param=where)
    if key == "fail_status" and not 400 <= value <= 599:
        raise RequestError(f"'{where}' must be an HTTP error status (400-599)", param=where)
    if key == "key" and len(value) > limits.max_key_length:
        raise RequestError(
            f"'{where}' must be at most {limits.max_key_length} characters", param=where
        )
