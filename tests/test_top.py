"""`sluice top` and the endpoint it reads, ``GET /v1/admin/streams``.

Against a running gateway with a master key: a slow stream under a named key is listed
with that key's name, its model and a growing token count, another key is refused;
``sluice top --once`` prints it; ``sluice top`` in a pseudo-terminal shows it, keeps
looking through an outage, and quits on ``q`` or Ctrl-C with exit code 0. The pure part
(scrapes -> rates, rows, alerts, one drawn frame) is tested without a server.
"""

from __future__ import annotations

import asyncio
import io
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from rich.console import Console

from sluice.cli.top_view import (
    Alert,
    Counters,
    Frame,
    Rates,
    alerts_from,
    counters_from,
    rates,
    render,
    rows_from,
)
from sluice.http.streams_admin import owner_parts
from sluice.telemetry.metrics import Metrics
from sluice.wire.sse import SSEDecoder
from tests.servers import ServerProcess, base_env, free_port, running
from tests.term_session import CTRL_C, CuttableProxy, Terminal, terminal_env

MASTER = "sk-master-" + "p" * 24
SLOW = {"ttft_ms": 0, "tokens_per_second": 40, "length": 1200}


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def watched(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("watched")
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(gateway_config)], tmp, name="watched", env=env) as s:
        yield s


async def create_key(server: ServerProcess, name: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/admin/keys", json={"name": name}, headers=auth(MASTER)
        ) as response,
    ):
        assert response.status == 200, await response.text()
        secret: str = (await response.json())["key"]
        return secret


async def admin_streams(server: ServerProcess, secret: str = MASTER) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(server.url + "/v1/admin/streams", headers=auth(secret)) as response,
    ):
        return response.status, orjson.loads(await response.read())


def row_of(listing: dict[str, Any], stream_id: str) -> dict[str, Any]:
    rows = [row for row in listing["data"] if row["id"] == stream_id]
    assert len(rows) == 1, listing
    return rows[0]


class Answer:
    """A streamed answer being read: its stream id and the content chunks so far."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.id = response.headers["x-sluice-stream-id"]
        self.decoder = SSEDecoder()
        self.tokens = 0

    async def read_tokens(self, at_least: int) -> None:
        async for piece in self.response.content.iter_any():
            for event in self.decoder.feed(piece):
                if event.data == "[DONE]":
                    continue
                choices = orjson.loads(event.data).get("choices") or [{}]
                if choices[0].get("delta", {}).get("content"):
                    self.tokens += 1
            if self.tokens >= at_least:
                return
        raise AssertionError(f"the answer ended after {self.tokens} tokens")


@asynccontextmanager
async def slow_answer(
    server: ServerProcess, secret: str, *, detach: bool = False
) -> AsyncIterator[Answer]:
    """A slow streamed answer (30 s at 40 tokens/s) under ``secret``, its first token
    read; cancelled when the block ends."""
    body = {
        "model": "sim",
        "stream": True,
        "messages": [{"role": "user", "content": "Tell me a long story " + secrets.token_hex(4)}],
        "sim": SLOW,
    }
    headers = auth(secret) | ({"X-Sluice-On-Disconnect": "detach"} if detach else {})
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            server.url + "/v1/chat/completions", json=body, headers=headers
        )
        assert response.status == 200, await response.text()
        answer = Answer(response)
        try:
            await answer.read_tokens(1)
            if detach:
                response.close()  # it runs on without us
            yield answer
        finally:
            response.close()
            async with session.post(
                f"{server.url}/v1/streams/{answer.id}/cancel", headers=auth(secret)
            ) as stopped:
                assert stopped.status in (200, 404)


# -- the endpoint ------------------------------------------------------------------------


async def test_streams_lists_a_running_answer_by_key_name_for_the_master_key_only(
    watched: ServerProcess,
) -> None:
    name = "top-alice-" + secrets.token_hex(3)
    alice = await create_key(watched, name)
    bob = await create_key(watched, "top-bob-" + secrets.token_hex(3))
    async with slow_answer(watched, alice) as answer:
        status, listing = await admin_streams(watched)
        assert status == 200
        assert listing["object"] == "list" and listing["running"] >= 1
        assert listing["retained"] >= listing["running"] and isinstance(listing["pid"], int)
        row = row_of(listing, answer.id)
        assert row["key_name"] == name and row["owner"] == "key" and row["key_id"]
        assert alice not in orjson.dumps(listing).decode(), "never the secret"
        assert row["model"] == "sim" and row["served_by"] == "sim"
        assert row["state"] == "running" and row["policy"] == "cancel"
        assert row["subscribers"] == 1 and row["conversation_id"] is None
        assert row["output_tokens"] >= 1 and row["ttft_seconds"] is not None
        assert 0 <= row["ttft_seconds"] <= row["age_seconds"]
        first = row["output_tokens"]

        # Read past what the gateway had counted: by then it has produced more.
        await answer.read_tokens(first + 3)
        status, later = await admin_streams(watched)
        again = row_of(later, answer.id)
        assert again["output_tokens"] >= answer.tokens > first
        assert again["age_seconds"] > row["age_seconds"]
        assert again["tokens_per_second"] is not None and again["tokens_per_second"] > 0

        # Another key, or none, may not look.
        status, refused = await admin_streams(watched, bob)
        assert status == 403 and refused["error"]["type"] == "permission_error"
        status, refused = await admin_streams(watched, "")
        assert status == 401


async def test_streams_lists_the_oldest_first_and_a_finished_answer_no_more(
    watched: ServerProcess,
) -> None:
    key = await create_key(watched, "top-order-" + secrets.token_hex(3))
    async with slow_answer(watched, key, detach=True) as older:
        async with slow_answer(watched, key, detach=True) as newer:
            status, listing = await admin_streams(watched)
            assert status == 200
            ids = [row["id"] for row in listing["data"]]
            assert ids.index(older.id) < ids.index(newer.id)
            assert row_of(listing, older.id)["policy"] == "detach"
            # The server notices its client left a moment after the client closed.
            for _ in range(100):
                if row_of(listing, older.id)["subscribers"] == 0:
                    break
                await asyncio.sleep(0.05)
                _, listing = await admin_streams(watched)
            assert row_of(listing, older.id)["subscribers"] == 0
        # Cancelled on leaving the block (the cancel answers once it has ended).
        _, listing = await admin_streams(watched)
        assert newer.id not in [row["id"] for row in listing["data"]]
        assert older.id in [row["id"] for row in listing["data"]]


# -- the command -------------------------------------------------------------------------


async def run_top(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sluice",
        "top",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env or base_env(),
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_top_once_prints_the_running_stream(watched: ServerProcess) -> None:
    name = "top-once-" + secrets.token_hex(3)
    key = await create_key(watched, name)
    async with slow_answer(watched, key, detach=True) as answer:
        env = base_env(SLUICE_MASTER_KEY=MASTER)
        code, out, err = await run_top("--url", watched.url, "--once", "--interval", "0.2", env=env)
        assert code == 0, err
        assert err == ""
        # Degraded: the shared test config has upstreams that are down on purpose.
        assert f"sluice top {watched.url}  status degraded  streams " in out
        line = next(line for line in out.splitlines() if answer.id[:12] in line)
        assert name in line and " sim " in line and "running" in line and "detach" in line
        assert "requests " in out and "/s" in out, "two looks: rates, not dashes"
        assert "\x1b[" not in out, "not a terminal: no escape sequences"


async def test_top_fails_in_one_line(watched: ServerProcess) -> None:
    bob = await create_key(watched, "top-refused-" + secrets.token_hex(3))
    code, out, err = await run_top("--url", watched.url, "--key", bob, "--once")
    assert code == 1 and out == ""
    assert err.startswith("sluice: error: ") and err.count("\n") == 1
    assert "HTTP 403" in err and "master key" in err and bob not in err

    dead = f"http://127.0.0.1:{free_port()}"
    code, out, err = await run_top("--url", dead, "--key", MASTER, "--once")
    assert code == 1 and out == ""
    assert err == f"sluice: error: cannot reach the gateway at {dead} (connection refused)\n"

    code, _, err = await run_top("--url", watched.url, "--once")
    assert code == 2 and "SLUICE_MASTER_KEY" in err and err.count("\n") == 1
    code, _, err = await run_top("--url", "ftp://nowhere", "--key", MASTER)
    assert code == 2 and err.startswith("sluice: error: --url")
    code, _, err = await run_top("--key", MASTER, "--interval", "0")
    assert code == 2 and err.startswith("sluice: error: ") and "--interval" in err


def test_top_live_shows_the_stream_survives_an_outage_and_quits_on_q(
    watched: ServerProcess, tmp_path: Path
) -> None:
    name = "top-live-" + secrets.token_hex(3)
    key = asyncio.run(create_key(watched, name))
    proxy = CuttableProxy(watched.port)
    term = Terminal(
        ["top", "--url", proxy.url, "--interval", "0.2"],
        terminal_env(tmp_path / "data", SLUICE_MASTER_KEY=MASTER),
        tmp_path,
    )
    try:
        term.wait(r"sluice top http://127\.0\.0\.1:\d+\s+status")
        term.wait(r"no streams running|STREAM")

        async def with_a_stream() -> None:
            async with slow_answer(watched, key, detach=True) as answer:
                found = term.wait(rf"{answer.id[:12]}\s+sim\s+{name}\s+[\d.]+s\s+(\d+)")
                tokens = int(found.group(1))
                # Redrawn as it runs: the count grows.
                while int(term.wait(rf"{answer.id[:12]}\s+sim\s+{name}\s+\S+\s+(\d+)")[1]) <= (
                    tokens
                ):
                    pass

                # The gateway goes away: the view says so and keeps looking.
                proxy.down = True
                proxy.cut()
                term.wait(r"status unreachable")
                term.wait(r"cannot reach the gateway at http://127\.0\.0\.1:\d+")
                proxy.down = False
                term.wait(r"status (?!unreachable)")  # a frame read after the outage
                term.wait(rf"{answer.id[:12]}\s+sim\s+{name}")

        asyncio.run(with_a_stream())
        term.send("q")
        assert term.exit_code() == 0
        assert "sluice: error" not in term.text
    finally:
        term.close()
        proxy.close()


def test_top_live_quits_on_ctrl_c(watched: ServerProcess, tmp_path: Path) -> None:
    term = Terminal(
        ["top", "--url", watched.url, "--key", MASTER, "--interval", "0.2"],
        terminal_env(tmp_path / "data"),
        tmp_path,
    )
    try:
        term.wait(r"q or Ctrl-C quits")
        term.send(CTRL_C)
        assert term.exit_code() == 0
    finally:
        term.close()


# -- the pure part -----------------------------------------------------------------------


def scrape_text() -> str:
    """What a gateway's /metrics says, written by the gateway's own Metrics."""
    metrics = Metrics(providers={"relay": "openai"})
    metrics.requests.labels("chat.completions", "relay", "2xx").inc(10)
    metrics.requests.labels("chat.completions", "relay", "5xx").inc(2)
    metrics.requests.labels("chat", "relay", "4xx").inc(3)
    # What watchers poll is not traffic: left out.
    metrics.requests.labels("health", "", "2xx").inc(50)
    metrics.requests.labels("health", "", "5xx").inc(7)
    metrics.requests.labels("admin", "", "2xx").inc(40)
    metrics.requests.labels("metrics", "", "2xx").inc(40)
    metrics.tokens.labels("relay", "openai", "output").inc(100)
    metrics.tokens.labels("relay", "openai", "input").inc(40)
    return metrics.render().decode()


def test_counters_come_from_the_gateways_own_metrics() -> None:
    counters = counters_from(scrape_text(), at=5.0)
    assert counters == Counters(
        at=5.0, requests=15, client_errors=3, server_errors=2, output_tokens=100
    )
    assert counters_from("", at=1.0) == Counters(at=1.0)
    with pytest.raises(ValueError, match="convert"):
        counters_from("sluice_requests_total{route=oops 1\n", at=1.0)


def test_rates_are_deltas_per_second() -> None:
    before = Counters(at=10.0, requests=100, client_errors=4, server_errors=1, output_tokens=500)
    after = Counters(at=12.0, requests=110, client_errors=8, server_errors=1, output_tokens=1500)
    assert rates(before, after) == Rates(
        requests=5.0, client_errors=2.0, server_errors=0.0, output_tokens=500.0
    )
    assert rates(None, after) is None, "one scrape: no rate yet"
    assert rates(after, after) is None, "no time between"
    # The gateway restarted: its counters start again from zero.
    restarted = Counters(at=14.0, requests=6, client_errors=0, server_errors=2, output_tokens=40)
    assert rates(after, restarted) == Rates(
        requests=3.0, client_errors=0.0, server_errors=1.0, output_tokens=20.0
    ), "every counter from zero, the one that is higher again too"


def test_rows_oldest_first_named_and_safe() -> None:
    body = {
        "data": [
            {"id": "young", "model": "m", "owner": "admin", "age_seconds": 1.0},
            {
                "id": "old",
                "model": "relay",
                "served_by": "relay-echo",
                "owner": "key",
                "key_id": "abc",
                "key_name": "team\x1b[2Jred",
                "age_seconds": 90.5,
                "output_tokens": 42,
                "tokens_per_second": 12.5,
                "ttft_seconds": 0.25,
                "state": "running",
                "subscribers": 2,
                "policy": "detach",
            },
            {"id": "gone", "owner": "key", "key_id": "deadbeef", "age_seconds": 5},
            {"model": "no id"},
            "not a row",
        ]
    }
    rows = rows_from(body)
    assert [row.id for row in rows] == ["old", "gone", "young"]
    old, gone, young = rows
    assert old.who == "team?[2Jred", "control characters never reach the terminal"
    assert (old.model, old.served_by, old.tokens, old.ttft) == ("relay", "relay-echo", 42, 0.25)
    assert gone.who == "key deadbeef", "a key with no name shows its id"
    assert young.who == "admin" and young.tokens == 0 and young.tokens_per_second is None
    assert rows_from({}) == [] and rows_from({"data": "nope"}) == []


def test_alerts_firing_first_and_absent_when_not_reported() -> None:
    assert alerts_from({"status": "ok"}) is None
    assert alerts_from(None) is None
    assert alerts_from({"alerts": []}) == []
    alerts = alerts_from(
        {
            "alerts": [
                {"name": "p95_ttft", "state": "resolved", "value": 0.2, "threshold": 2},
                {"name": "error_rate", "state": "firing", "value": 0.123456, "threshold": 0.05},
                "junk",
                {"state": "firing"},
            ]
        }
    )
    assert alerts == [
        Alert("error_rate", "firing", "0.123", "0.05"),
        Alert("?", "firing", "?", "?"),
        Alert("p95_ttft", "resolved", "0.2", "2"),
    ]


def drawn(frame: Frame) -> str:
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(render(frame, ["q or Ctrl-C quits"]))
    return console.export_text()


def test_a_frame_shows_streams_rates_and_alerts() -> None:
    rows = rows_from(
        {
            "data": [
                {
                    "id": "0123456789abcdef01234567",
                    "model": "relay",
                    "served_by": "relay-echo",
                    "owner": "key",
                    "key_id": "k1",
                    "key_name": "alice",
                    "age_seconds": 125.0,
                    "output_tokens": 300,
                    "tokens_per_second": 40.0,
                    "ttft_seconds": 0.25,
                    "state": "running",
                    "subscribers": 1,
                    "policy": "cancel",
                },
                {"id": "fedcba", "model": "sim", "owner": "anonymous", "age_seconds": 0.5},
            ]
        }
    )
    frame = Frame(
        url="http://gw:8000",
        rows=rows,
        running=3,
        retained=7,
        pid=4242,
        counters=Counters(at=1.0, requests=1234),
        rates=Rates(requests=4.0, client_errors=0.5, server_errors=0.25, output_tokens=230),
        status="degraded",
        alerts=[Alert("error_rate", "firing", "0.12", "0.05")],
        problems=["metrics: HTTP 403"],
    )
    text = drawn(frame)
    assert "sluice top http://gw:8000  status degraded  streams 3 running · 7 retained" in text
    assert "requests 4.00/s (1234 total)  5xx 0.25/s  4xx 0.50/s" in text
    assert "output tokens 230/s finished, 40/s streaming" in text
    assert "metrics: HTTP 403" in text
    old = next(line for line in text.splitlines() if "0123456789ab" in line)
    assert old.split() == [
        "0123456789ab", "relay", "→", "relay-echo", "alice", "2m05s", "300", "40", "250",
        "ms", "running", "1", "cancel",
    ]  # fmt: skip
    young = next(line for line in text.splitlines() if "fedcba" in line)
    assert young.split() == ["fedcba", "sim", "anonymous", "0.5s", "0", "–", "…", "?", "0", "?"]
    assert "the oldest 2 of 3" in text
    assert "alerts · 1 firing" in text and "firing    error_rate  0.12 (threshold 0.05)" in text
    assert "q or Ctrl-C quits" in text

    quiet = drawn(Frame(url="http://gw:8000"))
    assert "no streams running" in quiet and "this gateway reports no alerts" in quiet
    assert "requests – " in quiet and "status unknown" in quiet
    assert "none" in drawn(Frame(url="http://gw:8000", alerts=[]))


def test_owner_parts() -> None:
    assert owner_parts("key:abc123") == ("key", "abc123")
    assert owner_parts("admin") == ("admin", None)
    assert owner_parts("anonymous") == ("anonymous", None)
