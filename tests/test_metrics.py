"""``GET /metrics`` against running gateways: each family moves after the request that
should move it (also merged across two workers), and only the right callers read it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import GATEWAY_CONFIG
from tests.faults import new_key
from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + "m" * 24
TOKEN = "metrics-" + "t" * 24


@pytest.fixture(scope="module")
def observed(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("observed")
    config = tmp / "observed.toml"
    body = GATEWAY_CONFIG.format(upstream=upstream.url, dead_port=free_port(), blackhole_port=1)
    config.write_text('cache = "memory"\n' + body)
    env = base_env(SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(config)], tmp, name="observed", env=env) as server:
        yield server


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(server: ServerProcess, headers: dict[str, str] | None = None) -> Samples:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/metrics", headers=headers or {}) as response,
    ):
        assert response.status == 200, await response.text()
        assert response.headers["content-type"].startswith("text/plain")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every sample whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


async def complete(
    server: ServerProcess,
    model: str,
    *,
    leave_after: int | None = None,
    question: str | None = None,
    **extra: Any,
) -> int:
    request = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": question or f"metrics {new_key()}"}],
        **extra,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/v1/chat/completions", json=request) as response,
    ):
        seen = 0
        async for line in response.content:
            if line.startswith(b"data: {"):
                seen += 1
                if leave_after is not None and seen >= leave_after:
                    break
        return response.status


async def test_families_move_after_the_requests_that_move_them(observed: ServerProcess) -> None:
    before = await scrape(observed)
    assert await complete(observed, "relay") == 200
    after = await scrape(observed)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("sluice_tokens_total", gen_ai_request_model="relay", gen_ai_token_type="output") > 0
    assert grew("sluice_tokens_total", gen_ai_request_model="relay", gen_ai_token_type="input") > 0
    assert (
        grew("gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="relay") == 1
    )
    assert grew("gen_ai_client_token_usage_count", gen_ai_token_type="output") == 1
    assert grew("gen_ai_server_request_duration_seconds_count", outcome="completed") == 1
    assert total(after, "sluice_active_streams") == 0
    assert total(after, "process_resident_memory_bytes") > 10_000_000

    # Upstream errors, retries and a fallback: "broken" fails with 500 twice, then
    # falls back to "relay".
    before = after
    assert await complete(observed, "broken") == 200
    after = await scrape(observed)
    assert grew("sluice_upstream_errors_total", gen_ai_request_model="broken") == 2
    assert grew("sluice_retries_total", gen_ai_request_model="broken") == 2
    assert grew("sluice_fallbacks_total", gen_ai_response_model="relay") == 1

    # A failover mid-answer.
    before = after
    assert await complete(observed, "failover") == 200
    after = await scrape(observed)
    assert grew("sluice_failovers_total", gen_ai_request_model="failover") == 1

    # A client that leaves: a cancellation with its reason.
    before = after
    slow = {"sim": {"ttft_ms": 0, "tokens_per_second": 30, "length": 200}}
    await complete(observed, "relay", leave_after=2, **slow)
    for _ in range(100):
        after = await scrape(observed)
        if grew("sluice_cancellations_total", reason="client_left"):
            break
        await asyncio.sleep(0.05)
    assert grew("sluice_cancellations_total", reason="client_left") == 1

    # The cache: a miss, then a hit (which spends no tokens).
    before = after
    cached = {"temperature": 0, "question": f"cache me {new_key()}"}
    await complete(observed, "relay", **cached)
    middle = await scrape(observed)
    await complete(observed, "relay", **cached)
    after = await scrape(observed)
    assert grew("sluice_cache_requests_total", outcome="miss") == 1
    assert grew("sluice_cache_requests_total", outcome="hit") == 1
    assert grew("sluice_cache_stored_bytes_total") > 100
    assert total(after, "sluice_tokens_total") == total(middle, "sluice_tokens_total")
    assert total(after, "sluice_event_loop_lag_seconds") >= 0


async def test_no_label_carries_a_secret_or_text(observed: ServerProcess) -> None:
    await complete(observed, "relay", user="user-4711-secret")
    samples = await scrape(observed)
    text = repr(samples)
    for secret in ("sk-upstream-secret", "user-4711", "metrics "):
        assert secret not in text


async def test_who_may_read_metrics(
    tmp_path: Path, gateway_config: Path, upstream: ServerProcess
) -> None:
    env = base_env(
        SLUICE_MASTER_KEY=MASTER,
        SLUICE_METRICS_TOKEN=TOKEN,
        SLUICE_DATA_DIR=str(tmp_path / "data"),
    )
    with running(["serve", "--config", str(gateway_config)], tmp_path, name="m", env=env) as s:
        async with aiohttp.ClientSession() as session:
            for headers, status in (
                ({}, 401),
                ({"Authorization": "Bearer wrong-token-wrong-token"}, 401),
                ({"Authorization": f"Bearer {TOKEN}"}, 200),
                ({"Authorization": f"bearer {TOKEN}"}, 200),  # schemes ignore case
                ({"Authorization": f"Bearer {MASTER}"}, 200),
            ):
                async with session.get(s.url + "/metrics", headers=headers) as response:
                    assert response.status == status, headers
            async with session.post(
                s.url + "/v1/admin/keys",
                json={"name": "app"},
                headers={"Authorization": f"Bearer {MASTER}"},
            ) as response:
                key = (await response.json())["key"]
            async with session.get(
                s.url + "/metrics", headers={"Authorization": f"Bearer {key}"}
            ) as response:
                assert response.status == 403
                assert "metrics token" in (await response.json())["error"]["message"]
            # The token opens nothing else.
            async with session.get(
                s.url + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as response:
                assert response.status == 401


@pytest.mark.slow
async def test_two_workers_report_together(tmp_path: Path, gateway_config: Path) -> None:
    prefix = "sluice-metrics-" + secrets.token_hex(4)
    env = base_env(
        SLUICE_REDIS_URL="redis://127.0.0.1:6379/0",
        SLUICE_REDIS_PREFIX=prefix,
        SLUICE_DATA_DIR=str(tmp_path / "data"),
    )
    args = ["serve", "--config", str(gateway_config), "--workers", "2"]
    with running(args, tmp_path, name="workers", env=env) as server:
        before = await scrape(server)
        statuses = await asyncio.gather(*(complete(server, "sim") for _ in range(40)))
        assert set(statuses) == {200}
        after = await scrape(server)
    served = total(after, "gen_ai_server_request_duration_seconds_count") - total(
        before, "gen_ai_server_request_duration_seconds_count"
    )
    # Every answer counted once, whichever worker served it and whichever scraped.
    assert served == 40


async def test_request_families_move(
    tmp_path: Path, gateway_config: Path, upstream: ServerProcess
) -> None:
    """Requests by route and status class, the client's view of latency and the
    gateway's overhead, limit rejections and resumes."""
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp_path / "data"))
    master = {"Authorization": f"Bearer {MASTER}"}
    with running(["serve", "--config", str(gateway_config)], tmp_path, name="r", env=env) as s:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                s.url + "/v1/admin/keys", json={"name": "rpm", "rpm": 1}, headers=master
            ) as response:
                limited = {"Authorization": f"Bearer {(await response.json())['key']}"}
            before = await scrape(s, master)
            request = {
                "model": "relay",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            statuses = []
            stream_id = ""
            for _ in range(2):
                async with session.post(
                    s.url + "/v1/chat/completions", json=request, headers=limited
                ) as response:
                    await response.read()
                    statuses.append(response.status)
                    stream_id = response.headers.get("x-sluice-stream-id") or stream_id
            assert statuses == [200, 429]
            async with session.get(f"{s.url}/v1/streams/{stream_id}", headers=limited) as response:
                await response.read()
                assert response.status == 200
            after = await scrape(s, master)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    completions = {"route": "chat.completions", "gen_ai_request_model": "relay"}
    assert grew("sluice_requests_total", status_class="2xx", **completions) == 1
    assert grew("sluice_requests_total", status_class="4xx", **completions) == 1
    assert grew("sluice_client_time_to_first_token_seconds_count", **completions) == 1
    assert grew("sluice_gateway_overhead_seconds_count", **completions) == 1
    assert grew("sluice_client_time_per_output_token_seconds_count", **completions) == 1
    assert grew("sluice_rejections_total", limit="rate_limit_exceeded") == 1
    assert grew("sluice_resumes_total", route="streams") == 1


async def test_a_client_cannot_add_label_values(observed: ServerProcess) -> None:
    """A model name the gateway does not serve is a 404, and never a label: labels hold
    configured names only (or the series would grow with every client's string)."""
    for name in ("sk-proj-LEAKEDSECRET1234567890", "Patient 123-45-6789"):
        assert await complete(observed, name) == 404
    text = repr(await scrape(observed))
    assert "LEAKEDSECRET" not in text and "123-45-6789" not in text
