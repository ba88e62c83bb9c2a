"""The response cache's pure parts (keys, eligibility, what is storable, the entry codec)
and one contract suite run on every backend: memory, SQLite, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis

from sluice.cache.entry import CachedAnswer, decode, encode, storable
from sluice.cache.key import CacheControl, Plan, parse_cache_control, plan, request_key
from sluice.errors import RequestError
from sluice.events import Failover, Finish, RoleStart, StreamError, TextDelta, ToolCallDelta, Usage
from sluice.store.answer_cache import AnswerStore, MemoryAnswers, RedisAnswers, SQLAnswers
from sluice.store.database import create_engine, database_url, migrate
from tests.databases import postgres_database, sqlite_database

BODY = {
    "model": "sim",
    "messages": [{"role": "user", "content": "hi"}],
    "temperature": 0,
}


# -- keys ---------------------------------------------------------------------------


def test_delivery_and_caller_fields_are_not_part_of_the_key() -> None:
    key = request_key(BODY, "key:a")
    same = {
        **BODY,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-17",
        "metadata": {"trace": "x"},
        "temperature": 0.0,
        "seed": None,
    }
    assert request_key(same, "key:a") == key
    assert len(key) == 64


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"model": "other"},
        {"temperature": 0.5},
        {"top_p": 0.9},
        {"max_tokens": 10},
        {"seed": 1},
        {"n": 2},
        {"stop": ["x"]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "required"},
        {"response_format": {"type": "json_object"}},
        {"sim": {"length": 5}},
    ],
)
def test_what_decides_the_answer_is_part_of_the_key(change: dict[str, object]) -> None:
    assert request_key({**BODY, **change}, "key:a") != request_key(BODY, "key:a")


def test_scopes_do_not_share_keys() -> None:
    assert request_key(BODY, "key:a") != request_key(BODY, "key:b")
    assert request_key(BODY, "key:a") != request_key(BODY, "*")


NO_DIRECTIVES = CacheControl()


def _plan(
    body: dict[str, object], control: CacheControl = NO_DIRECTIVES, **options: object
) -> Plan:
    settings: dict[str, object] = {
        "model_cache": None,
        "ttl": 3600.0,
        "max_ttl": 86400.0,
        "cache_on": True,
        "coalesce": True,
    }
    settings.update(options)
    return plan(body, "key:a", control, **settings)  # type: ignore[arg-type]


def test_eligibility() -> None:
    deterministic = _plan(BODY)
    assert (deterministic.outcome, deterministic.read, deterministic.write) == ("miss", True, True)
    assert deterministic.ttl == 3600.0 and deterministic.share
    sampled = {**BODY, "temperature": 0.7}
    assert _plan(sampled).outcome == "bypass" and _plan(sampled).key is None
    assert _plan({k: v for k, v in BODY.items() if k != "temperature"}).key is None
    # Opted in: by the model's configuration, or by the request.
    assert _plan(sampled, model_cache=True).outcome == "miss"
    asked = _plan(sampled, CacheControl(max_age=60))
    assert asked.outcome == "miss" and asked.ttl == 60
    assert _plan(sampled, CacheControl(max_age=10**8)).ttl == 86400.0
    # Refresh: not read, written; bypass: nothing at all.
    refresh = _plan(BODY, CacheControl(no_cache=True))
    assert (refresh.outcome, refresh.read, refresh.write) == ("refresh", False, True)
    assert _plan(BODY, CacheControl(no_store=True)).key is None
    assert _plan(BODY, model_cache=False).key is None
    # Cache off: identical requests still share a generation, and nothing is stored.
    off = _plan(BODY, cache_on=False)
    assert (off.outcome, off.read, off.write, off.share) == ("bypass", False, False, True)
    assert _plan(BODY, cache_on=False, coalesce=False).key is None


def test_cache_control_header() -> None:
    assert parse_cache_control(None) == CacheControl()
    assert parse_cache_control("No-Cache, max-age=30") == CacheControl(no_cache=True, max_age=30)
    assert parse_cache_control('max-age="5", private') == CacheControl(max_age=5)
    assert parse_cache_control("no-store") == CacheControl(no_store=True)
    for bad in ("max-age=", "max-age=-1", "max-age=1.5", "max-age=9999999999"):
        with pytest.raises(RequestError) as error:
            parse_cache_control(bad)
        assert error.value.param == "cache-control"


# -- what is stored -----------------------------------------------------------------

WHOLE = [RoleStart(), TextDelta("hello"), Finish("stop"), Usage(3, 1, 4)]


def test_only_whole_answers_are_storable() -> None:
    assert storable(WHOLE, 1)
    assert not storable([RoleStart(), TextDelta("he"), Finish("incomplete")], 1)
    assert not storable([*WHOLE[:2], StreamError("server_error", "boom")], 1)
    assert not storable([*WHOLE[:2], Failover("a", "b", "x"), Finish("stop")], 1)
    assert not storable(WHOLE, 2)  # the second choice never finished
    two = [RoleStart(0), RoleStart(1), Finish("stop", 0), Finish("length", 1)]
    assert storable(two, 2)
    tool = [RoleStart(), ToolCallDelta(0, '{"a":', "call_1", "f"), Finish("tool_calls")]
    assert storable(tool, 1)


def test_entry_round_trip_marks_usage_as_cached() -> None:
    answer = CachedAnswer("sim", ((12.5, tuple(WHOLE[:2])), (40.0, tuple(WHOLE[2:]))), 1.0)
    back = decode(encode(answer))
    assert back == answer
    replayed = back.replayed()
    assert [offset for offset, _ in replayed] == [12.5, 40.0]
    usage = replayed[1][1][-1]
    assert isinstance(usage, Usage) and usage.details == {"cached": True}
    assert decode(b"not json") is None
    assert decode(b'{"v": 999}') is None


# -- the backends: one contract -------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql", "redis"])
async def answers(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AnswerStore]:
    kind = request.param
    if kind == "memory":
        yield MemoryAnswers(1 << 20)
    elif kind == "redis":
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        prefix = "sluice-test-" + secrets.token_hex(6)
        try:
            yield RedisAnswers(client, prefix)
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()
    elif kind == "sqlite":
        engine = create_engine(database_url(sqlite_database(tmp_path), None))
        await migrate(engine)
        try:
            yield SQLAnswers(engine)
        finally:
            await engine.dispose()
    else:
        async with postgres_database() as url:
            engine = create_engine(database_url(url, None))
            await migrate(engine)
            try:
                yield SQLAnswers(engine)
            finally:
                await engine.dispose()


async def test_put_get_replace(answers: AnswerStore) -> None:
    assert await answers.get("k1") is None
    await answers.put("k1", "sim", b"one", 60)
    assert await answers.get("k1") == b"one"
    await answers.put("k1", "sim", b"uno", 60)
    assert await answers.get("k1") == b"uno"
    held = await answers.stats()
    assert (held.entries, held.bytes) == (1, 3)


async def test_entries_expire(answers: AnswerStore) -> None:
    await answers.put("short", "sim", b"x" * 10, 0.2)
    await answers.put("long", "sim", b"y" * 10, 60)
    assert await answers.get("short") == b"x" * 10
    await asyncio.sleep(0.35)
    assert await answers.get("short") is None
    assert await answers.get("long") == b"y" * 10
    held = await answers.stats()
    assert (held.entries, held.bytes) == (1, 10)


async def test_clear_all_or_one_model(answers: AnswerStore) -> None:
    await answers.put("a1", "model-a", b"1", 60)
    await answers.put("a2", "model-a", b"2", 60)
    await answers.put("b1", "model-b", b"3", 60)
    assert await answers.clear("model-a") == 2
    assert await answers.get("a1") is None and await answers.get("b1") == b"3"
    assert await answers.clear("nobody") == 0
    assert await answers.clear() == 1
    assert (await answers.stats()).entries == 0


async def test_memory_is_bounded_and_least_recently_used_goes_first() -> None:
    memory = MemoryAnswers(4000)
    for name in ("a", "b", "c"):
        await memory.put(name, "sim", b"x" * 1000, 60)
    assert await memory.get("a") is not None  # a is now the most recently used
    await memory.put("d", "sim", b"x" * 1000, 60)
    await memory.put("e", "sim", b"x" * 1000, 60)
    assert await memory.get("b") is None
    assert await memory.get("a") is not None
    held = await memory.stats()
    assert held.bytes <= 4000 and held.entries == 4
    # One answer may not push out most of the others.
    await memory.put("huge", "sim", b"x" * 1500, 60)
    assert await memory.get("huge") is None
