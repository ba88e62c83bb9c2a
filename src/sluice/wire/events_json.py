"""Events <-> JSON-able dicts, for event logs shared between gateway instances."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sluice.events import (
    Event,
    Failover,
    Finish,
    ReasoningDelta,
    ResponseMeta,
    RoleStart,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

_KINDS: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        RoleStart,
        TextDelta,
        ReasoningDelta,
        ToolCallDelta,
        Usage,
        Finish,
        StreamError,
        Failover,
        ResponseMeta,
    )
}
_FIELDS = {name: tuple(f.name for f in fields(cls)) for name, cls in _KINDS.items()}
assert all("event" not in names for names in _FIELDS.values())


#: The tag naming an event's class; no event has a field of this name.
TAG = "event"


def event_to_dict(event: Event) -> dict[str, Any]:
    name = type(event).__name__
    data = {field: getattr(event, field) for field in _FIELDS[name]}
    data[TAG] = name
    return data


def event_from_dict(data: dict[str, Any]) -> Event:
    name = data.get(TAG)
    cls = _KINDS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown event {name!r}")
    event: Event = cls(**{k: v for k, v in data.items() if k != TAG})
    return event
