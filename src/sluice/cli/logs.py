"""``sluice logs``: the request log — one row per request, no chat text — filtered and
optionally followed. In process on the configured database (same ``--config`` and
``SLUICE_*`` settings as ``serve``), or through a running gateway's admin API with
``--url`` (the master key in ``SLUICE_MASTER_KEY``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

import aiohttp
import orjson
import typer

from sluice.cli.admin_api import admin_json, admin_session, gateway_url
from sluice.cli.keys import ConfigOption, DataDirOption
from sluice.cli.terminal import fail
from sluice.errors import ConfigError, RequestError
from sluice.settings import Settings
from sluice.store.database import create_engine, database_url, migrate
from sluice.store.request_log import RequestLogStore
from sluice.telemetry.queries import LogFilter, log_filter, row_line

Fetch = Callable[[LogFilter, int | None], Awaitable[list[dict[str, Any]]]]


def logs(
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Asked for or served by.")
    ] = None,
    key: Annotated[str | None, typer.Option(help="An API key's id or name.")] = None,
    status: Annotated[str | None, typer.Option(help="A status (429) or a class (5xx).")] = None,
    since: Annotated[
        str | None, typer.Option(help="How far back: 30s, 10m, 2h, 7d, or an ISO date.")
    ] = None,
    request_id: Annotated[str | None, typer.Option("--id", help="One request, by its id.")] = None,
    limit: Annotated[int, typer.Option(help="Rows at most (1-1000).")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new rows.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per row.")] = False,
    url: Annotated[
        str | None, typer.Option(help="A running gateway (master key in SLUICE_MASTER_KEY).")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show the request log, newest last: who asked what, how it went (never chat text)."""
    try:
        wanted = log_filter(
            model=model, key=key, status=status, since=since, request_id=request_id, limit=limit
        )
    except RequestError as exc:
        raise fail(exc.message.replace("since", "--since", 1), 2) from None
    if url is not None:
        run = _remote(gateway_url(url), wanted, follow, as_json)
    else:
        try:
            settings = Settings.load(config, data_dir=data_dir)
        except ConfigError as exc:
            raise fail(exc.message, 2) from None
        run = _local(settings, wanted, follow, as_json)
    try:
        asyncio.run(run)
    except KeyboardInterrupt:
        return
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise fail(f"cannot read the request log ({type(exc).__name__}: {exc})", 1) from None


async def _show(fetch: Fetch, wanted: LogFilter, follow: bool, as_json: bool) -> None:
    rows = list(reversed(await fetch(wanted, None)))  # newest first -> oldest first
    last = _print(rows, as_json, 0)
    while follow:
        await asyncio.sleep(1.0)
        # Page until a short page: a busy gateway writes more than one page a second.
        while True:
            page = await fetch(wanted, last)
            last = _print(page, as_json, last)
            if len(page) < wanted.limit:
                break


def _print(rows: list[dict[str, Any]], as_json: bool, last: int) -> int:
    for row in rows:
        typer.echo(orjson.dumps(row).decode() if as_json else row_line(row))
        last = max(last, int(row["id"]))
    return last


async def _local(settings: Settings, wanted: LogFilter, follow: bool, as_json: bool) -> None:
    secret = settings.database_url.get_secret_value() if settings.database_url else None
    engine = create_engine(database_url(secret, settings.data_dir))
    try:
        await migrate(engine)
        store = RequestLogStore(engine)

        async def fetch(filter_: LogFilter, after: int | None) -> list[dict[str, Any]]:
            query = filter_.as_query()
            if after is not None:
                query["since"] = None  # following: everything after the last row shown
            return await store.query(**query, after_id=after)

        await _show(fetch, wanted, follow, as_json)
    finally:
        await engine.dispose()


async def _remote(url: str, wanted: LogFilter, follow: bool, as_json: bool) -> None:
    async with admin_session() as session:

        async def fetch(filter_: LogFilter, after: int | None) -> list[dict[str, Any]]:
            query = {k: v for k, v in filter_.as_query().items() if v is not None}
            if "status" in query or "status_class" in query:
                exact, kind = query.pop("status", None), query.pop("status_class", None)
                query["status"] = str(exact) if exact else f"{kind}xx"
            if "since" in query:
                query["since"] = time_iso(query["since"]) if after is None else None
            if after is not None:
                query["after"] = after
            query = {k: v for k, v in query.items() if v is not None}
            body = await admin_json(
                session,
                "GET",
                f"{url}/v1/admin/requests?{urlencode(query)}",
                what="the request log",
            )
            rows = body.get("data") if isinstance(body, dict) else None
            if not isinstance(rows, list) or not all(_is_row(row) for row in rows):
                raise fail(f"{url} answered something that is not the request log", 1)
            return rows

        await _show(fetch, wanted, follow, as_json)


def _is_row(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and isinstance(row.get("id"), int)
        and isinstance(row.get("at"), int | float)
        and all(isinstance(row.get(k), str) for k in ("request_id", "method", "route"))
        and isinstance(row.get("status"), int)
    )


def time_iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(epoch))


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
