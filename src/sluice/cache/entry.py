"""A cached answer: its events in the batches they arrived in, with when each arrived,
as bytes for any backend. Pure: no I/O.

Only whole answers are stored (``storable``): every choice finished by the model, no
error, no cancellation or cut, no switch to another model. Their usage is kept as the
upstream reported it; a replay marks it ``cached``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import orjson

from sluice.events import Event, Failover, Finish, StreamError, Usage
from sluice.wire.events_json import event_from_dict, event_to_dict

VERSION = 1


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    model: str
    #: ``(milliseconds after the request started, events)`` per batch, in order.
    batches: tuple[tuple[float, tuple[Event, ...]], ...]
    stored_at: float

    @property
    def events(self) -> list[Event]:
        return [event for _, batch in self.batches for event in batch]

    def replayed(self) -> tuple[tuple[float, list[Event]], ...]:
        """The batches a replay sends: usage marked as served from the cache."""
        return tuple(
            (offset, [cached_usage(event) for event in batch]) for offset, batch in self.batches
        )


def cached_usage(event: Event) -> Event:
    """``event``, with usage marked as served without spending tokens here."""
    if type(event) is Usage:
        return replace(event, details={**event.details, "cached": True})
    return event


#: Finish reasons of answers that were cut short: stopped, or blocked by a guardrail.
_CUT = ("incomplete", "content_filter")


def storable(events: Sequence[Event], choices: int) -> bool:
    """Whether ``events`` are a whole answer of ``choices`` choices."""
    finished: set[int] = set()
    for event in events:
        kind = type(event)
        if kind is StreamError or kind is Failover:
            return False
        if kind is Finish:
            if event.reason in _CUT:  # type: ignore[union-attr]
                return False
            finished.add(event.index)  # type: ignore[union-attr]
    return finished == set(range(choices))


def encode(answer: CachedAnswer) -> bytes:
    return orjson.dumps(
        {
            "v": VERSION,
            "model": answer.model,
            "stored_at": answer.stored_at,
            "batches": [
                [round(offset, 3), [event_to_dict(e) for e in batch]]
                for offset, batch in answer.batches
            ],
        }
    )


def decode(data: bytes) -> CachedAnswer | None:
    """The answer in ``data``, or None for anything this version cannot read (an entry
    of another version, or damaged: a miss, never an error)."""
    try:
        value = orjson.loads(data)
        if not isinstance(value, dict) or value.get("v") != VERSION:
            return None
        batches = tuple(
            (float(offset), tuple(event_from_dict(e) for e in events))
            for offset, events in value["batches"]
        )
        return CachedAnswer(str(value["model"]), batches, float(value["stored_at"]))
    except (ValueError, TypeError, KeyError):
        return None
