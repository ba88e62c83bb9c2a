"""Retries, fallbacks and cooldowns, against the real gateway and a real sim upstream:
each test asserts what the client saw and what the upstream saw."""

from __future__ import annotations

import time

import openai
import pytest
from openai import OpenAI

from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess


@pytest.fixture
def client(gateway: ServerProcess) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)


def ask(client: OpenAI, model: str, sim: dict[str, object] | None = None, **extra: object) -> str:
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Tell me about retries"}],
        stream=True,
        extra_body={"sim": sim} if sim else None,
        **extra,  # type: ignore[arg-type]
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 409, 429])
def test_retryable_status_is_retried_until_success(
    client: OpenAI, upstream: ServerProcess, status: int
) -> None:
    key = new_key()
    text = ask(client, "flaky", {"fail_status": status, "fail_times": 2, "key": key})
    assert len(text) > 20
    seen = upstream_saw(upstream, key)
    assert seen["attempts"] == 3
    assert seen["failed"] == 2 and seen["completed"] == 1


def test_attempts_are_bounded(client: OpenAI, upstream: ServerProcess) -> None:
    key = new_key()
    with pytest.raises(openai.InternalServerError):
        ask(client, "flaky", {"fail_status": 503, "key": key})
    assert upstream_saw(upstream, key)["attempts"] == 3


def test_retry_after_is_honoured(client: OpenAI, upstream: ServerProcess) -> None:
    key = new_key()
    started = time.monotonic()
    ask(client, "flaky", {"fail_status": 429, "retry_after": 0.6, "fail_times": 1, "key": key})
    assert time.monotonic() - started >= 0.6
    assert upstream_saw(upstream, key)["attempts"] == 2


def test_client_errors_are_not_retried(client: OpenAI, upstream: ServerProcess) -> None:
    key = new_key()
    with pytest.raises(openai.BadRequestError):
        ask(client, "flaky", {"fail_status": 400, "key": key})
    assert upstream_saw(upstream, key)["attempts"] == 1


def test_no_retry_after_output_started(client: OpenAI, upstream: ServerProcess) -> None:
    key = new_key()
    with pytest.raises(openai.APIError):
        ask(client, "flaky", {"drop_after": 4, "key": key})
    assert upstream_saw(upstream, key)["attempts"] == 1


def test_drop_before_any_token_is_retried(client: OpenAI, upstream: ServerProcess) -> None:
    # The upstream sent its role chunk and died: nothing reached the client yet.
    key = new_key()
    with pytest.raises(openai.InternalServerError):
        ask(client, "flaky", {"drop_after": 0, "key": key})
    assert upstream_saw(upstream, key)["attempts"] == 3


def test_fallback_serves_when_the_model_is_down(client: OpenAI) -> None:
    text = ask(client, "dead-then-relay")
    assert len(text) > 20


def test_failing_upstream_cools_down_then_is_tried_again(
    client: OpenAI, upstream: ServerProcess
) -> None:
    # "broken" always fails (its own options inject a 500 under key "broken"), retries
    # once, falls back to "relay", and cools down for 1.5 s.
    before = upstream_saw(upstream, "broken")["attempts"]
    assert len(ask(client, "broken")) > 20
    assert upstream_saw(upstream, "broken")["attempts"] == before + 2
    assert len(ask(client, "broken")) > 20
    assert upstream_saw(upstream, "broken")["attempts"] == before + 2, "skipped while cooling"
    time.sleep(1.6)
    assert len(ask(client, "broken")) > 20
    assert upstream_saw(upstream, "broken")["attempts"] == before + 4, "tried after cooldown"
