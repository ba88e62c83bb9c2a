"""The embedding API: the engine in-process, async and sync."""

from __future__ import annotations

import pytest

from sluice import Settings, Sluice, SluiceError, SyncSluice, TextDelta
from sluice.events import Finish, RoleStart, Usage
from sluice.settings import ModelConfig


def settings() -> Settings:
    fast = {"ttft_ms": 0, "tokens_per_second": 0, "length": 80}
    return Settings(
        models=[
            ModelConfig(name="sim", provider="sim", options=fast),
            ModelConfig(name="echo", provider="sim", options={**fast, "style": "echo"}),
        ]
    )


async def test_async_stream_yields_events_in_order() -> None:
    async with Sluice(settings()) as sluice:
        events = [e async for e in sluice.stream("Tell me about queues", seed=3)]
    assert isinstance(events[0], RoleStart)
    assert isinstance(events[-2], Finish) and events[-2].reason == "stop"
    assert isinstance(events[-1], Usage)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "queue" in text.lower()


async def test_async_complete_is_deterministic_for_a_seed() -> None:
    async with Sluice(settings()) as sluice:
        first = await sluice.complete("Compare Go and Rust", seed=11)
        second = await sluice.complete("Compare Go and Rust", seed=11)
        other = await sluice.complete("Compare Go and Rust", seed=12)
    assert first.text == second.text != other.text
    assert first.completion_tokens == sum(isinstance(e, TextDelta) for e in first.events)


def test_sync_stream_and_early_exit_cancels() -> None:
    with SyncSluice(settings()) as sluice:
        answer = sluice.complete("こんにちは、元気ですか", model="echo")
        assert answer.text == "こんにちは、元気ですか"
        seen = 0
        for event in sluice.stream("A long answer please", model="sim"):
            seen += isinstance(event, TextDelta)
            if seen == 3:
                break
        engine = sluice._sluice.engine
        assert engine.active == 0, "leaving the loop must cancel the generation"


def test_sync_errors_raise() -> None:
    with SyncSluice(settings()) as sluice, pytest.raises(SluiceError) as caught:
        sluice.complete("hi", model="sim", sim={"fail_status": 503})
    assert caught.value.status == 503
