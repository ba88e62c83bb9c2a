"""Playing a script in time: time to first token, tokens per second with jitter, stalls,
and the in-stream faults (a dropped connection, a malformed chunk).

Shared by the in-process provider and the ``sluice sim`` server; each turns a ``Fault``
into what it means on its side (an exception in-process, a cut socket on the wire).
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sluice.events import Event
from sluice.providers.sim.options import SimOptions
from sluice.providers.sim.script import Script, last_user_text


class Fault(enum.Enum):
    DROP = "drop"
    MALFORMED = "malformed"


async def play(
    script: Script, options: SimOptions, seed: int | None = None
) -> AsyncIterator[list[Event] | Fault]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    gap = 1.0 / options.tokens_per_second if options.tokens_per_second > 0 else 0.0
    at = loop.time() + options.ttft_ms / 1000
    steps = script.steps
    last = len(steps) - 1
    for position, step in enumerate(steps):
        # Steps 1..last-1 carry tokens; `tokens` is how many were sent before this one.
        tokens = max(0, position - 1)
        if position >= 1 and tokens == options.stall_after and options.stall_ms:
            at += options.stall_ms / 1000
        if position >= 2 and position < last:
            at += gap * (1.0 + options.jitter * (rng.random() * 2 - 1)) if gap else 0.0
        if position >= 1:
            if options.drop_after is not None and tokens >= options.drop_after:
                yield Fault.DROP
                return
            if options.malformed_after is not None and tokens >= options.malformed_after:
                yield Fault.MALFORMED
                return
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        elif gap == 0.0 and position % 16 == 0:
            # Unpaced streams still give the event loop a turn now and then.
            await asyncio.sleep(0)
        yield step


#: What the statistics remember, so a long run (or a hostile client) cannot grow them
#: without end: the newest entries per key, the newest keys, the start of each prompt.
KEPT_PER_KEY = 1000
KEPT_KEYS = 10_000
KEPT_PROMPT_CHARS = 4096


def _recent() -> deque[Any]:
    return deque(maxlen=KEPT_PER_KEY)


@dataclass
class KeyStats:
    attempts: int = 0
    completed: int = 0
    disconnected: int = 0
    failed: int = 0
    #: Wall-clock times (time.time()) at which this key's clients disconnected.
    disconnected_at: deque[float] = field(default_factory=_recent)
    #: Request bodies' last user messages, in arrival order (continuation checks).
    prompts: deque[str] = field(default_factory=_recent)
    #: Each request's message roles, in order (what history the model was sent).
    roles: deque[list[str]] = field(default_factory=_recent)
    #: Each request's ``temperature`` (None: not sent), so tests see settings arrive.
    temperatures: deque[float | None] = field(default_factory=_recent)


@dataclass
class SimStats:
    """What the simulated upstream saw, so tests can assert the upstream-visible outcome."""

    by_key: dict[str, KeyStats] = field(default_factory=dict)
    requests: int = 0
    active: int = 0
    #: Calls of ``/v1/moderations`` (a guardrail asking).
    moderations: int = 0

    def attempt(
        self, key: str | None, messages: list[dict[str, Any]], temperature: Any = None
    ) -> int:
        self.requests += 1
        stats = self.key(key)
        stats.attempts += 1
        stats.prompts.append(last_user_text(messages)[:KEPT_PROMPT_CHARS])
        stats.roles.append([str(m.get("role"))[:16] for m in messages[-KEPT_PER_KEY:]])
        number = isinstance(temperature, int | float) and not isinstance(temperature, bool)
        stats.temperatures.append(float(temperature) if number else None)
        return stats.attempts

    def key(self, key: str | None) -> KeyStats:
        name = key or ""
        stats = self.by_key.get(name)
        if stats is None:
            if len(self.by_key) >= KEPT_KEYS:
                # The oldest key goes (dicts keep insertion order).
                del self.by_key[next(iter(self.by_key))]
            stats = self.by_key[name] = KeyStats()
        return stats

    def snapshot(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "active": self.active,
            "moderations": self.moderations,
            "keys": {
                key: {
                    "attempts": s.attempts,
                    "completed": s.completed,
                    "disconnected": s.disconnected,
                    "failed": s.failed,
                    "disconnected_at": list(s.disconnected_at),
                    "prompts": list(s.prompts),
                    "roles": list(s.roles),
                    "temperatures": list(s.temperatures),
                }
                for key, s in self.by_key.items()
            },
        }

    def reset(self) -> None:
        self.by_key.clear()
        self.requests = 0
