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


def test_no_retry_after_output_started(gateway: ServerProcess, upstream: ServerProcess) -> None:
    key = new_key()
    error = stream_error(gateway, "flaky", {"drop_after": 4, "key": key})
    assert error["code"] == "upstream_error"
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


def test_mid_stream_failover_continues_on_the_next_model(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    import json
    import urllib.request

    from sluice.engine.generation import CONTINUE_PROMPT

    request = urllib.request.Request(
        gateway.url + "/v1/chat/completions",
        data=json.dumps(
            {
                "model": "failover",
                "stream": True,
                "messages": [{"role": "user", "content": "Tell me about failover"}],
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        raw = response.read().decode()
    chunks = [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: {")]
    assert raw.endswith("data: [DONE]\n\n")
    roles = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("role")]
    assert len(roles) == 1, "one start for the client, whichever model continued"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    # The primary said 6 tokens, then relay-echo (which repeats the last user message)
    # got the continuation request.
    assert text.endswith(CONTINUE_PROMPT)
    assert len(text) > len(CONTINUE_PROMPT)
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["sluice"]["failover"][0]["from"] == "failover"
    assert final["sluice"]["failover"][0]["to"] == "relay-echo"
    assert upstream_saw(upstream, "failover-primary")["attempts"] >= 1


def test_without_failover_a_mid_stream_failure_is_in_band(gateway: ServerProcess) -> None:
    error = stream_error(gateway, "no-failover", {})
    assert error["code"] == "upstream_error"


def test_a_backoff_longer_than_first_token_is_not_a_timeout(
    client: OpenAI, upstream: ServerProcess
) -> None:
    # first_token is 0.3 s; the upstream asks for 0.8 s before the retry.
    key = new_key()
    text = ask(
        client, "flaky-ttft", {"fail_status": 429, "retry_after": 0.8, "fail_times": 1, "key": key}
    )
    assert len(text) > 20
    assert upstream_saw(upstream, key)["attempts"] == 2


def test_total_timeout_before_the_first_token_is_504(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, "relay-total", {"ttft_ms": 3000})
    assert caught.value.status_code == 504
    assert caught.value.code == "total_timeout"


def test_resume_after_a_failover_counts_records(gateway: ServerProcess) -> None:
    import json
    import urllib.request

    request = urllib.request.Request(
        gateway.url + "/v1/chat/completions",
        data=json.dumps(
            {
                "model": "failover",
                "stream": True,
                "messages": [{"role": "user", "content": "Tell me about failover"}],
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        stream_id = response.headers["x-sluice-stream-id"]
        records = [
            line for line in response.read().decode().split("\n") if line.startswith("data: ")
        ]
    assert len(records) > 12, "the answer went through the failover"
    for after in (3, 8, len(records) - 2):
        url = f"{gateway.url}/v1/streams/{stream_id}?after={after}"
        with urllib.request.urlopen(url, timeout=20) as resumed:
            tail = [
                line for line in resumed.read().decode().split("\n") if line.startswith("data: ")
            ]
        assert tail == records[after:], after


def stream_error(gateway: ServerProcess, model: str, sim: dict[str, object]) -> dict[str, str]:
    """The in-band error record that ends a stream (and no [DONE] before it)."""
    import json
    import urllib.request

    request = urllib.request.Request(
        gateway.url + "/v1/chat/completions",
        data=json.dumps(
            {
                "model": model,
                "stream": True,
                "messages": [{"role": "user", "content": "Tell me about timeouts"}],
                "sim": sim,
            }
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        raw = response.read().decode()
    assert "[DONE]" not in raw
    last = [line for line in raw.split("\n") if line.startswith("data: ")][-1]
    error: dict[str, str] = json.loads(last[6:])["error"]
    return error


def test_idle_timeout_ends_a_stalled_stream(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    started = time.monotonic()
    error = stream_error(gateway, "relay-idle", {"stall_after": 5, "stall_ms": 5000, "key": key})
    assert error["code"] == "idle_timeout"
    assert time.monotonic() - started < 3
    assert upstream_saw(upstream, key)["attempts"] == 1, "no retry after output"


def test_total_timeout_bounds_the_answer(gateway: ServerProcess) -> None:
    started = time.monotonic()
    error = stream_error(gateway, "relay-total", {"tokens_per_second": 10, "length": 100})
    assert error["code"] == "total_timeout"
    assert time.monotonic() - started < 3


def test_connect_timeout_is_504(client: OpenAI) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, "blackhole")
    assert caught.value.status_code == 504
    assert caught.value.code == "connect_timeout"
    assert time.monotonic() - started < 3
