"""``sluice cache stats | clear [--model M]``: the response cache.

In process, on the backend the settings name (the same ``--config`` and ``SLUICE_*``
settings as ``serve``): the database or Redis. The memory backend lives inside the
gateway's process, so it is reached through a running gateway's admin API instead
(``--url`` with the master key in ``SLUICE_MASTER_KEY``), which also reports that
process's counters (hits, misses, coalesced requests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import aiohttp
import typer

from sluice.cli.admin_api import admin_json, admin_session, gateway_url, unreachable
from sluice.cli.keys import ConfigOption, DataDirOption
from sluice.cli.terminal import fail
from sluice.errors import ConfigError
from sluice.settings import Settings
from sluice.store.answer_cache import AnswerStore, RedisAnswers, SQLAnswers
from sluice.store.database import create_engine, database_url, migrate
from sluice.store.redis_client import connect

cache_app = typer.Typer(help="Look at and clear the response cache.", no_args_is_help=True)

T = TypeVar("T")
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url", help="A running gateway (its admin API; the master key in SLUICE_MASTER_KEY)."
    ),
]
ModelOption = Annotated[str | None, typer.Option("--model", "-m", help="Only this model's.")]


def _in_process(
    config: Path | None, data_dir: Path | None, action: Callable[[AnswerStore], Awaitable[T]]
) -> T:
    try:
        settings = Settings.load(config, data_dir=data_dir)
    except ConfigError as exc:
        raise fail(exc.message, 2) from None
    if settings.cache == "off":
        raise fail('the response cache is off (set cache = "memory", "database" or "redis")', 2)
    if settings.cache == "memory":
        raise fail(
            "the memory cache lives inside the gateway's process: use --url with the "
            "gateway's address (and SLUICE_MASTER_KEY)",
            2,
        )

    async def run() -> T:
        if settings.cache == "redis":
            assert settings.redis_url is not None
            client = connect(settings.redis_url.get_secret_value())
            try:
                return await action(RedisAnswers(client, settings.redis_prefix))
            finally:
                await client.aclose()
        secret = settings.database_url.get_secret_value() if settings.database_url else None
        engine = create_engine(database_url(secret, settings.data_dir))
        try:
            await migrate(engine)
            return await action(SQLAnswers(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except Exception as exc:
        raise fail(
            f"the cache's {settings.cache} backend failed: {type(exc).__name__}", 1
        ) from None


def _remote(url: str, method: str, path: str) -> dict[str, Any]:
    base = gateway_url(url)

    async def run() -> Any:
        async with admin_session() as session:
            return await admin_json(session, method, base + path, what="the cache's admin API")

    try:
        body = asyncio.run(run())
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(url, exc) from None
    if not isinstance(body, dict):
        raise fail(f"{url} answered something that is not the cache's admin API", 1)
    return body


@cache_app.command("stats")
def stats(
    url: UrlOption = None, config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """Entries and bytes held (and, with --url, the gateway's hit and miss counters)."""
    if url is not None:
        figures = _remote(url, "GET", "/v1/admin/cache")
        figures.pop("object", None)
    else:

        async def action(store: AnswerStore) -> dict[str, Any]:
            held = await store.stats()
            return {"entries": held.entries, "bytes": held.bytes}

        figures = _in_process(config, data_dir, action)
    for name, value in figures.items():
        typer.echo(f"{name:12} {value}")


@cache_app.command("clear")
def clear(
    model: ModelOption = None,
    url: UrlOption = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove cached answers: all of them, or one model's."""
    if url is not None:
        query = f"?model={quote(model, safe='')}" if model else ""
        removed = int(_remote(url, "DELETE", f"/v1/admin/cache{query}")["removed"])
    else:

        async def action(store: AnswerStore) -> int:
            return await store.clear(model)

        removed = _in_process(config, data_dir, action)
    typer.echo(f"removed {removed} cached answer{'s' if removed != 1 else ''}")
