"""The composition root and the process edge: one Redis client for everything shared,
settings read once and handed to workers as they were loaded, no module-level settings
state, and GC/allocator tuning only where the server asks for it."""

from __future__ import annotations

import asyncio
import gc
import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr

from sluice import Settings, Sluice
from sluice.http.app import Gateway
from sluice.http.memory import ProcessMemory
from sluice.http.server import WORKER_SETTINGS_ENV, app_from_environment, settings_json
from sluice.policy.budgets import RedisLedger
from sluice.policy.limits import RedisSlots
from sluice.policy.sessions import RedisSessions
from sluice.runtime import Runtime
from sluice.settings import ModelConfig

REDIS = "redis://127.0.0.1:6379/0"


def fast(**values: object) -> Settings:
    return Settings(
        models=[ModelConfig(name="sim", provider="sim", options={"ttft_ms": 0, "length": 20})],
        **values,  # type: ignore[arg-type]
    )


async def test_one_redis_client_for_everything_shared(tmp_path: Path) -> None:
    prefix = "test-runtime-" + secrets.token_hex(4)
    runtime = Runtime.build(fast(redis_url=REDIS, redis_prefix=prefix, data_dir=tmp_path))
    try:
        client = runtime.redis
        assert client is not None and runtime.shared is runtime.engine.shared
        assert runtime.shared is not None and runtime.shared._client is client
        sessions, slots, ledger = runtime.sessions, runtime.limits.slots, runtime.quota._ledger
        assert isinstance(sessions, RedisSessions) and sessions._client is client
        assert isinstance(slots, RedisSlots) and slots._client is client
        assert isinstance(ledger, RedisLedger) and ledger._client is client
        # And it works: a session made through the graph is in that Redis.
        token, _ = await runtime.access.sessions.create("key-1", False)
        assert await sessions.get(token) is not None
    finally:
        if runtime.redis is not None:
            async for name in runtime.redis.scan_iter(match=f"{prefix}:*"):
                await runtime.redis.delete(name)
        await runtime.aclose()


async def test_without_redis_everything_stays_in_memory(tmp_path: Path) -> None:
    runtime = Runtime.build(fast(data_dir=tmp_path))
    try:
        assert runtime.redis is None and runtime.shared is None
        assert runtime.engine.shared is None
    finally:
        await runtime.aclose()


async def test_embedding_tunes_nothing_process_wide(tmp_path: Path) -> None:
    frozen = gc.get_freeze_count()
    unused = tmp_path / "data"
    async with Sluice(fast(data_dir=unused)) as sluice:
        answer = await sluice.complete("hi")
    assert answer.text
    assert not unused.exists(), "building the graph opened the store"
    # A gateway in someone else's process (no ProcessMemory) starts and stops as well.
    gateway = Gateway(fast(data_dir=tmp_path))
    async with gateway.api.router.lifespan_context(gateway.api):
        assert gateway.memory is None
    assert gc.get_freeze_count() == frozen, "the embedded engine froze the host's GC"


class Streams:
    retained = 0


async def test_the_server_freezes_after_start_and_trims_once_per_quiet_time() -> None:
    calls: list[int] = []
    streams = Streams()
    memory = ProcessMemory(tick=0.01, trim=lambda pad: calls.append(pad) or 1)
    try:
        memory.start(streams)
        assert gc.get_freeze_count() > 0
        await asyncio.sleep(0.1)
        assert memory.trims == 0, "nothing ran: nothing to give back"
        streams.retained = 3
        await asyncio.sleep(0.05)
        assert memory.trims == 0, "never while streams are held"
        streams.retained = 0
        await asyncio.sleep(0.1)
        assert memory.trims == 1 and calls == [0]
        await asyncio.sleep(0.1)
        assert memory.trims == 1, "once per quiet time"
        streams.retained = 1
        await asyncio.sleep(0.05)
        streams.retained = 0
        await asyncio.sleep(0.1)
        assert memory.trims == 2
    finally:
        memory.stop()
        gc.unfreeze()


def test_settings_keep_no_file_table_between_loads(tmp_path: Path) -> None:
    config = tmp_path / "sluice.toml"
    config.write_text("port = 1234\nkeepalive_seconds = 3.5\n")
    loaded = Settings.load(config)
    assert (loaded.port, loaded.keepalive_seconds) == (1234, 3.5)
    assert type(loaded) is Settings
    # The next load (and a plain Settings) sees no trace of the file.
    assert Settings.load().port == 8000
    assert Settings().keepalive_seconds == 15.0


def test_workers_get_the_settings_their_parent_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = fast(
        port=8123,
        data_dir=tmp_path,
        master_key="sk-master-" + "m" * 20,
        redis_url=REDIS,
        redis_prefix="test-handoff-" + secrets.token_hex(4),
        workers=2,
    )
    settings = settings.model_copy(
        update={
            "models": [
                *settings.models,
                ModelConfig(
                    name="up",
                    provider="openai",
                    base_url="http://127.0.0.1:9/v1",
                    api_key=SecretStr("sk-upstream-secret"),
                ),
            ]
        }
    )
    handed = settings_json(settings)
    assert Settings.model_validate_json(handed) == settings
    # What the worker builds comes from the handed-over settings, not from variables
    # that say otherwise.
    monkeypatch.setenv(WORKER_SETTINGS_ENV, handed)
    monkeypatch.setenv("SLUICE_PORT", "9999")
    gateway = app_from_environment()
    try:
        assert gateway.settings == settings
        assert gateway.settings.master_key is not None
        assert gateway.settings.master_key.get_secret_value() == "sk-master-" + "m" * 20
        assert gateway.memory is not None, "a served worker tunes its process"
    finally:
        asyncio.run(gateway.runtime.aclose())
