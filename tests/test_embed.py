"""The embedding API: the engine in-process, async and sync."""

from __future__ import annotations

import pytest

from sluice import Settings, Sluice, SluiceError, SyncSluice, TextDelta, errors
from sluice.errors import UpstreamRateLimited, UpstreamRejected, UpstreamTimeout
from sluice.events import Finish, ResponseMeta, RoleStart, StreamError, Usage
from sluice.settings import ModelConfig
from sluice.wire.errors import error_from_stream, stream_error_from
from sluice.wire.events_json import event_from_dict, event_to_dict


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
    # The response's facts (system_fingerprint, service_tier) come before the choice.
    assert [type(e) for e in events[:2]] == [ResponseMeta, RoleStart]
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


# -- a failed answer raises the exception it failed with --------------------------------


def failing() -> Settings:
    once = {"attempts": 1}
    return Settings(
        models=[
            ModelConfig(name="sim", provider="sim", options={"ttft_ms": 0}, retry=once),
            ModelConfig(
                name="slow",
                provider="sim",
                options={"ttft_ms": 5000},
                timeouts={"first_token": 0.2},
                retry=once,
            ),
        ]
    )


async def test_async_errors_keep_their_class_and_fields() -> None:
    async with Sluice(failing()) as sluice:
        with pytest.raises(UpstreamRateLimited) as limited:
            await sluice.complete("hi", sim={"fail_status": 429, "retry_after": 7})
        with pytest.raises(UpstreamTimeout) as timed_out:
            await sluice.complete("hi", model="slow")
    assert limited.value.status == 429 and limited.value.retry_after == 7
    assert limited.value.code == "upstream_rate_limited"
    assert limited.value.type == "rate_limit_error" and limited.value.retryable
    assert timed_out.value.status == 504 and timed_out.value.code == "first_token_timeout"


def test_sync_errors_keep_their_class() -> None:
    with SyncSluice(failing()) as sluice, pytest.raises(UpstreamRejected) as caught:
        sluice.complete("hi", sim={"fail_status": 400})
    assert caught.value.status == 400 and not caught.value.retryable


def _tree() -> list[type[SluiceError]]:
    found = [getattr(errors, name) for name in errors.__all__]
    return [cls for cls in found if isinstance(cls, type) and issubclass(cls, SluiceError)]


@pytest.mark.parametrize("cls", _tree(), ids=lambda cls: cls.__name__)
def test_every_error_survives_the_stream_record(cls: type[SluiceError]) -> None:
    # Through the JSON a shared log stores too (a stream resumed on another instance).
    original = cls("what went wrong", param="messages", code="some_code", retry_after=3)
    record = event_from_dict(event_to_dict(stream_error_from(original)))
    assert isinstance(record, StreamError)
    back = error_from_stream(record)
    assert type(back) is cls
    for field in ("message", "param", "code", "status", "type", "retryable", "retry_after"):
        assert getattr(back, field) == getattr(original, field), field


def test_a_record_naming_no_error_class_is_a_plain_sluice_error() -> None:
    record = StreamError("server_error", "boom", status=500, exception="SystemExit")
    back = error_from_stream(record)
    assert type(back) is SluiceError
    assert (back.message, back.status, back.type) == ("boom", 500, "server_error")
