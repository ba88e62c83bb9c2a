"""Budgets and limits under concurrency: the ledger's atomic reservations (memory and
Redis, one contract), slots given back on every path, and against running gateways:
concurrent streams cannot overspend a budget, failures leak no slot, keys get a default
concurrency cap, and a Redis outage is a 503 that heals by itself."""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis as sync_redis
import redis.asyncio as redis

from sluice.errors import RateLimited
from sluice.events import Usage
from sluice.policy.access import Principal
from sluice.policy.budgets import Ask, Grant, Ledger, MemoryLedger, Period, RedisLedger
from sluice.policy.limits import RateLimits, RedisSlots
from sluice.policy.quota import Quota
from sluice.settings import ModelConfig
from sluice.store.database import create_engine, migrate
from sluice.store.keys import KeyStore
from tests.servers import ServerProcess, base_env, free_port, running

MASTER = "sk-master-" + "b" * 24
REDIS = "redis://127.0.0.1:6379/0"


# -- the ledger: one contract, two backends ----------------------------------------


@pytest.fixture
async def redis_client() -> AsyncIterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(REDIS)
    prefix = "sluice-test-" + secrets.token_hex(6)
    try:
        yield client, prefix
    finally:
        names = [name async for name in client.scan_iter(match=f"{prefix}:*")]
        if names:
            await client.delete(*names)
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def ledgers(
    request: pytest.FixtureRequest, redis_client: tuple[redis.Redis, str]
) -> tuple[Ledger, Ledger]:
    """Two views of one ledger: two instances' in Redis, one process's in memory."""
    if request.param == "memory":
        ledger = MemoryLedger()
        return ledger, ledger
    client, prefix = redis_client
    return RedisLedger(client, prefix), RedisLedger(client, prefix)


def period(tokens: int | None = 200, cost: int | None = None) -> Period:
    start = time.time() // 86400 * 86400
    return Period("key-" + secrets.token_hex(4), start, start + 86400, tokens, cost)


def loader(spent: tuple[int, int] = (0, 0)) -> Any:
    calls: list[int] = []

    async def load() -> tuple[int, int]:
        calls.append(1)
        await asyncio.sleep(0.01)  # a database read: others may race it
        return spent

    load.calls = calls  # type: ignore[attr-defined]
    return load


async def test_concurrent_reservations_never_exceed_the_budget(
    ledgers: tuple[Ledger, Ledger],
) -> None:
    account = period(200)
    load = loader()
    asks = [ledgers[i % 2].reserve(account, f"a{i}", Ask(8, 0.0, 0.0, 30), load) for i in range(40)]
    grants: list[Grant] = await asyncio.gather(*asks)
    granted = {f"a{i}": g for i, g in enumerate(grants) if g.count}
    assert sum(g.tokens for g in granted.values()) == 200, "all of it, and no more"
    assert sorted(g.count for g in granted.values()) == [2, 30, 30, 30, 30, 30], (
        "the last gets the rest"
    )
    assert {g.refused for g in grants if not g.count} == {"reserved"}
    # Answers in flight hold it; once they are settled, their usage is what is spent.
    small = min(granted, key=lambda holder: granted[holder].count)
    for holder, grant in granted.items():
        used = 8 if holder == small else grant.tokens  # the small one: its prompt only
        await ledgers[int(holder[1:]) % 2].settle(account, holder, (used, 0))
    more = await ledgers[1].reserve(account, "b", Ask(0, 0.0, 0.0, 30), load)
    assert (more.count, more.tokens) == (2, 2), "an extension gets the 2 tokens left"
    held = await ledgers[0].reserve(account, "c", Ask(0, 0.0, 0.0, 30), load)
    assert held == Grant(0, refused="reserved"), "the last 2 are held"
    prompt = await ledgers[0].reserve(account, "c", Ask(8, 0.0, 0.0, 30), load)
    assert prompt == Grant(0, refused="spent"), "a prompt of 8 would not fit even so"
    await ledgers[0].settle(account, "b", (2, 0))
    spent = await ledgers[0].reserve(account, "c", Ask(0, 0.0, 0.0, 30), load)
    assert spent == Grant(0, refused="spent")


async def test_spent_comes_from_the_usage_log_once(ledgers: tuple[Ledger, Ledger]) -> None:
    account = period(200)
    load = loader((150, 0))
    grants = await asyncio.gather(
        ledgers[0].reserve(account, "a", Ask(8, 0.0, 0.0, 256), load),
        ledgers[1].reserve(account, "b", Ask(8, 0.0, 0.0, 256), load),
    )
    assert sorted(g.count for g in grants) == [0, 42], "150 spent, 8 prompt: 42 left"
    calls = len(load.calls)
    assert 1 <= calls <= 2, "read once per instance that found the period new"
    await ledgers[0].reserve(account, "c", Ask(8, 0.0, 0.0, 256), load)
    assert len(load.calls) == calls, "a known period is not read again"


async def test_settling_adds_usage_and_returns_the_reservation(
    ledgers: tuple[Ledger, Ledger],
) -> None:
    account = period(200)
    load = loader()
    first = await ledgers[0].reserve(account, "a", Ask(8, 0.0, 0.0, 100), load)
    extension = await ledgers[1].reserve(account, "a", Ask(0, 0.0, 0.0, 50), load)
    assert (first.tokens, extension.tokens) == (108, 50)
    await ledgers[1].settle(account, "a", (38, 0))  # the answer used 38 of its 158
    await ledgers[0].settle(account, "a", (0, 0))  # settled twice: nothing more returned
    again = await ledgers[0].reserve(account, "b", Ask(8, 0.0, 0.0, 1000), load)
    assert (again.count, again.tokens) == (154, 162), "200 - 38 spent - 8 prompt"


async def test_cost_budgets_count_micro_units(ledgers: tuple[Ledger, Ledger]) -> None:
    # 0.001 a day; prompt 5 tokens at 2.5/M, completion at 10/M (micro-units per token).
    account = period(tokens=None, cost=1000)
    load = loader()
    grant = await ledgers[0].reserve(account, "a", Ask(5, 12.5, 10.0, 256), load)
    assert (grant.count, grant.cost) == (98, 993), "floor((1000 - 12.5) / 10) tokens"
    refused = await ledgers[1].reserve(account, "b", Ask(5, 12.5, 10.0, 256), load)
    assert refused.refused == "reserved"
    await ledgers[0].settle(account, "a", (103, 993))
    spent = await ledgers[1].reserve(account, "b", Ask(5, 12.5, 10.0, 256), load)
    assert spent.refused == "spent"


async def test_redis_ledger_keys_carry_the_prefix(
    redis_client: tuple[redis.Redis, str],
) -> None:
    client, prefix = redis_client
    account = period(200)
    await RedisLedger(client, prefix).reserve(account, "a", Ask(8, 0.0, 0.0, 10), loader())
    name = f"{prefix}:budget:{account.key_id}:{int(account.start)}"
    assert await client.hget(name, "reserved") == b"18"
    assert await client.ttl(name) > 86400, "kept past the period's end"
    assert await client.ttl(name + ":leases") > 86400


async def test_a_crashed_instance_reservation_is_given_back(
    redis_client: tuple[redis.Redis, str],
) -> None:
    client, prefix = redis_client
    ledger = RedisLedger(client, prefix, lease_seconds=1.0)
    account = period(200)
    load = loader()
    running = await ledger.reserve(account, "running", Ask(8, 0.0, 0.0, 92), load)
    crashed = await ledger.reserve(account, "crashed", Ask(8, 0.0, 0.0, 92), load)
    assert (running.tokens, crashed.tokens) == (100, 100)
    for _ in range(8):  # only the running answer's instance renews its share
        await asyncio.sleep(0.2)
        await ledger.renew([(account, "running")])
    retry = await ledger.reserve(account, "new", Ask(8, 0.0, 0.0, 500), load)
    assert (retry.count, retry.tokens) == (92, 100), "the crashed share came back, not the other"


async def test_redis_slots_are_leases_that_expire_unless_renewed(
    redis_client: tuple[redis.Redis, str],
) -> None:
    client, prefix = redis_client
    slots = RedisSlots(client, prefix, lease_seconds=1.0)
    held = [await slots.acquire("k", 2) for _ in range(3)]
    assert held[0] and held[1] and held[2] is None, "two at most"
    for _ in range(8):  # renewed by its owner: kept past the lease
        await asyncio.sleep(0.2)
        await slots.renew([("k", held[0]), ("k", held[1])])
    assert await slots.count("k") == 2
    # The owner crashed: nobody renews, the slots run out by themselves.
    await asyncio.sleep(1.3)
    assert await slots.count("k") == 0
    assert await slots.acquire("k", 2) is not None
    assert await client.exists(f"{prefix}:slots:k")


# -- tickets: slots and reservations given back on every path ----------------------


@dataclass
class FakeAnswer:
    """What metering sees of an answer; ``done`` without running ``on_finish`` is a
    metering callback that never ran."""

    id: str = "answer"
    model: str = "m"
    served_by: str | None = "m"
    usage: Usage | None = None
    on_finish: list[Any] = field(default_factory=list)
    done: bool = False


class FailingLedger(MemoryLedger):
    async def settle(self, period: Period, holder: str, used: tuple[int, int]) -> None:
        raise ConnectionError("redis went away")


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[KeyStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await migrate(engine)
    yield KeyStore(engine)
    await engine.dispose()


def quota(keys: KeyStore, limits: RateLimits, ledger: Ledger | None = None) -> Quota:
    models = {"m": ModelConfig(name="m", provider="sim")}
    return Quota(keys, limits, models, ledger=ledger, unmetered_seconds=0.2, sweep_seconds=0.05)


async def eventually(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "did not happen"
        await asyncio.sleep(0.05)


async def test_a_slot_is_given_back_when_metering_never_runs(keys: KeyStore) -> None:
    key, _ = await keys.create(name="t", max_concurrent=1, budget_tokens=500, budget_period="day")
    limits = RateLimits()
    gate = quota(keys, limits)
    principal = Principal(key=key)
    messages = [{"role": "user", "content": "hi"}]
    # Admitted, but the caller failed before starting the answer (never metered).
    await gate.admit(principal, "m", messages, None)
    assert await limits.slots.count(key.id) == 1
    await eventually(lambda: _free(limits, key.id))
    # Admitted and metered, but the answer ended without its callback running.
    ticket = await gate.admit(principal, "m", messages, None)
    answer = FakeAnswer(usage=Usage(8, 20, 28))
    gate.meter(answer, principal, ticket)
    answer.done = True
    await eventually(lambda: _free(limits, key.id))
    await gate.settle()
    assert (await keys.spent(key.id, 0))[0] == 28, "its usage was recorded all the same"
    # Both reservations came back: the whole budget but the 28 spent can be reserved.
    again = await gate.admit(principal, "m", messages, 1000)
    assert again.allowance is not None and again.allowance.remaining == 500 - 28 - 8
    await gate.settle()


async def test_a_failing_settlement_still_frees_the_slot(keys: KeyStore) -> None:
    key, _ = await keys.create(name="t", max_concurrent=1, budget_tokens=500, budget_period="day")
    limits = RateLimits()
    gate = quota(keys, limits, FailingLedger())
    principal = Principal(key=key)
    for _ in range(3):
        # (Its reservations are never returned: the ledger fails closed.)
        ticket = await gate.admit(principal, "m", [{"role": "user", "content": "hi"}], 10)
        answer = FakeAnswer(usage=Usage(8, 5, 13))
        gate.meter(answer, principal, ticket)
        answer.on_finish.append(gate.finisher(ticket))  # as Engine.start does
        for callback in answer.on_finish:
            callback(answer)
        await gate.settle()
        assert await limits.slots.count(key.id) == 0


class QuickLeases(RateLimits):
    LEASE_SECONDS = 1.5


async def test_a_long_answer_keeps_its_leases(
    keys: KeyStore, redis_client: tuple[redis.Redis, str]
) -> None:
    client, prefix = redis_client
    key, _ = await keys.create(name="t", max_concurrent=1, budget_tokens=300, budget_period="day")
    limits = QuickLeases(client, prefix=prefix)
    ledger = RedisLedger(client, prefix, lease_seconds=1.5)
    gate = quota(keys, limits, ledger)
    principal = Principal(key=key)
    messages = [{"role": "user", "content": "hi"}]
    ticket = await gate.admit(principal, "m", messages, None)
    answer = FakeAnswer()
    gate.meter(answer, principal, ticket)
    answer.on_finish.append(gate.finisher(ticket))  # as Engine.start does
    await asyncio.sleep(4.0)  # several leases long: its owner renewed them
    assert await limits.slots.count(key.id) == 1
    other = Principal(key=await keys.get(key.id))
    with pytest.raises(RateLimited) as refused:
        await gate.admit(other, "m", messages, None)
    assert refused.value.code == "concurrency_limit_exceeded"
    assert ticket.allowance is not None
    probe = await ledger.reserve(ticket.allowance.period, "probe", Ask(0, 0.0, 0.0, 999), loader())
    assert probe.count == 300 - 264, "its share (prompt + a block) is still held"
    await ledger.settle(ticket.allowance.period, "probe", (0, 0))
    answer.usage, answer.done = Usage(8, 10, 18), True
    for callback in answer.on_finish:
        callback(answer)
    await gate.settle()
    assert await limits.slots.count(key.id) == 0
    after = await gate.admit(principal, "m", messages, None)
    assert after.allowance is not None and after.allowance.remaining == 256, (
        "its share was held until it ended, then returned"
    )
    await gate.settle()


async def _free(limits: RateLimits, key_id: str) -> bool:
    return await limits.slots.count(key_id) == 0


# -- against running gateways --------------------------------------------------------


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def new_key(server: ServerProcess, **limits: Any) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/admin/keys", json={"name": "b", **limits}, headers=auth(MASTER)
        ) as response,
    ):
        assert response.status == 200, await response.text()
        key: dict[str, Any] = await response.json()
        return key


@dataclass
class Answer:
    status: int
    code: str | None
    tokens: int
    headers: dict[str, str]


async def stream(server: ServerProcess, secret: str, model: str = "relay", **body: Any) -> Answer:
    """One streamed request: its status, error code, and the content tokens received
    (the simulator sends one token per chunk)."""
    payload = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        **body,
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/v1/chat/completions", json=payload, headers=auth(secret)
        ) as response,
    ):
        raw = await response.read()
        headers = dict(response.headers)
        if response.status != 200:
            return Answer(response.status, json.loads(raw)["error"]["code"], 0, headers)
    tokens, code = 0, None
    for line in raw.decode().split("\n"):
        if not line.startswith("data: {"):
            continue
        record = json.loads(line[6:])
        if "error" in record:
            code = record["error"]["code"]
        for choice in record.get("choices") or []:
            tokens += bool(choice["delta"].get("content"))
    return Answer(200, code, tokens, headers)


def usage_rows(data_dir: Path, key_id: str) -> tuple[int, int]:
    """(rows, tokens) the usage table holds for the key."""
    with sqlite3.connect(data_dir / "sluice.db") as db:
        rows, tokens = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) "
            "FROM usage WHERE key_id = ?",
            (key_id,),
        ).fetchone()
    return int(rows), int(tokens)


@dataclass
class Deployment:
    servers: list[ServerProcess]
    data_dir: Path
    prefix: str | None

    def slots(self, key_id: str) -> int:
        """Stream slots the key holds in Redis."""
        assert self.prefix is not None
        client = sync_redis.Redis.from_url(REDIS)
        try:
            return int(client.zcard(f"{self.prefix}:slots:{key_id}"))
        finally:
            client.close()


def forget_prefix(url: str, prefix: str) -> None:
    client = sync_redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(match=f"{prefix}:*"))
        if names:
            client.delete(*names)
    finally:
        client.close()


@contextmanager
def deployment(
    tmp: Path,
    gateway_config: Path,
    *,
    instances: int = 1,
    redis_url: str | None = None,
    **env: str,
) -> Iterator[Deployment]:
    """Gateways sharing one SQLite store (and one Redis, under a fresh prefix)."""
    data_dir = tmp / "data"
    prefix = "sluice-test-" + secrets.token_hex(6) if redis_url else None
    extra = {"SLUICE_MASTER_KEY": MASTER, "SLUICE_DATA_DIR": str(data_dir), **env}
    if redis_url and prefix:
        extra |= {"SLUICE_REDIS_URL": redis_url, "SLUICE_REDIS_PREFIX": prefix}
    args = ["serve", "--config", str(gateway_config)]
    with ExitStack() as stack:
        if redis_url == REDIS and prefix:
            stack.callback(forget_prefix, redis_url, prefix)  # the shared one: tidy up
        servers = [
            stack.enter_context(running(args, tmp, name=f"b{i}", env=base_env(**extra)))
            for i in range(instances)
        ]
        yield Deployment(servers, data_dir, prefix)


@pytest.fixture(scope="module", params=["memory", "redis"])
def gateways(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    gateway_config: Path,
) -> Iterator[Deployment]:
    """One gateway keeping limits in memory, or two sharing them through Redis."""
    tmp = tmp_path_factory.mktemp(f"budgets-{request.param}")
    shared = request.param == "redis"
    with deployment(
        tmp,
        gateway_config,
        instances=2 if shared else 1,
        redis_url=REDIS if shared else None,
        SLUICE_DEFAULT_KEY_CONCURRENCY="3",
    ) as found:
        yield found


async def settled(deploy: Deployment, key_id: str, answers: int) -> tuple[int, int]:
    """The key's usage rows once every served answer is recorded."""
    deadline = time.monotonic() + 10
    while True:
        rows, tokens = usage_rows(deploy.data_dir, key_id)
        if rows >= answers or time.monotonic() > deadline:
            return rows, tokens
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("max_tokens", [None, 20])
async def test_concurrent_streams_cannot_overspend_a_budget(
    gateways: Deployment, max_tokens: int | None
) -> None:
    key = await new_key(gateways.servers[0], budget_tokens=200, period="day", max_concurrent=50)
    servers = gateways.servers
    body: dict[str, Any] = {"sim": {"length": 300}}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    answers = await asyncio.gather(
        *(stream(servers[i % len(servers)], key["key"], **body) for i in range(20))
    )
    served = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status != 200]
    assert served, "the budget serves someone"
    assert {(a.status, a.code) for a in refused} <= {
        (429, "budget_reserved"),
        (429, "insufficient_quota"),
    }
    refusal = next((a for a in refused if a.code == "budget_reserved"), None)
    if refusal is not None:
        assert int(refusal.headers["Retry-After"]) >= 1
    # The prompt is 8 tokens; what the clients got and what the log holds fit in 200.
    assert sum(a.tokens + 8 for a in served) <= 200
    rows, tokens = await settled(gateways, key["id"], len(served))
    assert rows == len(served)
    assert 0 < tokens <= 200
    if max_tokens is not None:
        assert len(served) >= 2, "small reservations let several answers run at once"
    # Spent, the budget refuses up front.
    late = await stream(servers[-1], key["key"], **body)
    assert (late.status, late.code) in {(429, "insufficient_quota"), (200, "insufficient_quota")}


async def open_stream(
    session: aiohttp.ClientSession, server: ServerProcess, secret: str
) -> aiohttp.ClientResponse:
    """A slow stream, left open (its status is known once its first token came)."""
    return await session.post(
        server.url + "/v1/chat/completions",
        json={
            "model": "relay",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "sim": {"tokens_per_second": 20, "length": 200},
        },
        headers=auth(secret),
    )


async def test_failures_and_refusals_leak_no_slot(gateways: Deployment) -> None:
    server = gateways.servers[0]
    key = await new_key(server, max_concurrent=2, budget_tokens=100_000, period="day")
    for _ in range(10):
        failed = await stream(server, key["key"], model="dead")
        assert failed.status in (502, 503), failed
    async with aiohttp.ClientSession() as session:
        first = await open_stream(session, server, key["key"])
        second = await open_stream(session, gateways.servers[-1], key["key"])
        assert (first.status, second.status) == (200, 200), "both slots are free"
        third = await stream(server, key["key"])
        assert (third.status, third.code) == (429, "concurrency_limit_exceeded")
        first.close()  # the client leaves mid-answer
        second.close()
    if gateways.prefix is not None:

        async def none_held() -> bool:
            return gateways.slots(key["id"]) == 0

        await eventually(none_held)
    else:
        await asyncio.sleep(0.5)
    # A budget held by an answer in flight: refusals after the slot was taken give it
    # back (else the third would be refused for concurrency).
    # 264: the prompt (8) and one block (256), all held by the first answer.
    held = await new_key(server, max_concurrent=2, budget_tokens=264, period="day")
    async with aiohttp.ClientSession() as session:
        holder = await open_stream(session, server, held["key"])
        assert holder.status == 200
        for _ in range(5):
            refused = await stream(gateways.servers[-1], held["key"])
            assert (refused.status, refused.code) == (429, "budget_reserved")
        holder.close()
    again = [await stream(server, key["key"], sim={"length": 5}) for _ in range(2)]
    assert [a.status for a in again] == [200, 200]


async def test_keys_without_a_cap_get_the_default(gateways: Deployment) -> None:
    server = gateways.servers[0]
    key = await new_key(server)
    async with aiohttp.ClientSession() as session:
        streams = [await open_stream(session, server, key["key"]) for _ in range(3)]
        assert [s.status for s in streams] == [200, 200, 200]
        over = await stream(gateways.servers[-1], key["key"])
        assert (over.status, over.code) == (429, "concurrency_limit_exceeded")
        for response in streams:
            response.close()


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A throwaway Redis of our own, to kill."""
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = sync_redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except sync_redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        yield process
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.slow
async def test_a_redis_outage_is_a_503_and_heals(tmp_path: Path, gateway_config: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with (
        redis_server(port) as first,
        deployment(tmp_path, gateway_config, redis_url=url) as deploy,
    ):
        server = deploy.servers[0]
        key = await new_key(server, rpm=1000, budget_tokens=100_000, period="day")
        assert (await stream(server, key["key"])).status == 200
        first.terminate()
        first.wait(10)
        bodies: list[dict[str, Any]] = [{}, {"stream": False}]
        for body in bodies:
            down = await stream(server, key["key"], **body)
            assert (down.status, down.code) == (503, "service_unavailable"), down
            assert int(down.headers["Retry-After"]) >= 1
            assert down.headers["Content-Type"].startswith("application/json")
        with redis_server(port):
            deadline = time.monotonic() + 20
            while (answer := await stream(server, key["key"])).status != 200:
                assert answer.status == 503, answer
                assert time.monotonic() < deadline, "service did not resume"
                await asyncio.sleep(0.2)
            assert answer.code is None and answer.tokens > 0


@pytest.mark.slow
async def test_a_slot_taken_by_an_answer_that_never_started_comes_back(
    tmp_path: Path, gateway_config: Path
) -> None:
    # One answer at a time: a second admitted request fails to start (503), after its
    # key's slot was taken.
    with deployment(tmp_path, gateway_config, SLUICE_MAX_RUNNING_GENERATIONS="1") as deploy:
        server = deploy.servers[0]
        key = await new_key(server, max_concurrent=1)
        async with aiohttp.ClientSession() as session:
            busy = await open_stream(session, server, MASTER)
            assert busy.status == 200
            overloaded = await stream(server, key["key"])
            assert (overloaded.status, overloaded.code) == (503, "overloaded")
            busy.close()
        deadline = time.monotonic() + 30
        while (answer := await stream(server, key["key"])).status != 200:
            # The refused request's slot is given back at once (Quota.release); until
            # the busy answer's cancellation completes, the gateway is still full.
            assert (answer.status, answer.code) in (
                (429, "concurrency_limit_exceeded"),
                (503, "overloaded"),
            )
            assert time.monotonic() < deadline, "the slot never came back"
            await asyncio.sleep(0.5)
