"""``sluice keys create | list | revoke``: API keys, straight in the store the gateway
uses (same ``--config`` and ``SLUICE_*`` settings as ``serve``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from sluice.errors import ConfigError, SluiceError
from sluice.settings import Settings
from sluice.store.database import create_engine, database_url, migrate
from sluice.store.keys import ApiKey, KeyStore

keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

T = TypeVar("T")
ConfigOption = Annotated[Path | None, typer.Option("--config", "-C", help="TOML config file.")]
DataDirOption = Annotated[Path | None, typer.Option(help="Where the SQLite store lives.")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"sluice: error: {message}", err=True)
    return typer.Exit(code)


def _with_keys(
    config: Path | None, data_dir: Path | None, action: Callable[[KeyStore], Awaitable[T]]
) -> T:
    try:
        settings = Settings.load(config, data_dir=data_dir)
    except ConfigError as exc:
        raise _fail(exc.message, 2) from None
    secret = settings.database_url.get_secret_value() if settings.database_url else None

    async def run() -> T:
        engine = create_engine(database_url(secret, settings.data_dir))
        try:
            await migrate(engine)
            return await action(KeyStore(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except SluiceError as exc:
        raise _fail(exc.message, 1) from None


def _row(key: ApiKey) -> str:
    limits = []
    if key.models:
        limits.append("models=" + ",".join(key.models))
    for name in ("rpm", "tpm", "max_concurrent"):
        value = getattr(key, name)
        if value:
            limits.append(f"{name}={value}")
    if key.budget_tokens or key.budget_cost:
        budget = key.budget_tokens or key.budget_cost
        limits.append(f"budget={budget}/{key.budget_period}")
    if key.expires_at:
        limits.append(
            "expires=" + dt.datetime.fromtimestamp(key.expires_at, dt.UTC).date().isoformat()
        )
    state = "revoked" if key.revoked_at else ("expired" if not key.usable() else "active")
    return f"{key.id}  {key.prefix}…  {state:8}  {key.name}  {' '.join(limits)}".rstrip()


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")],
    models: Annotated[str | None, typer.Option(help="Allowed models, comma-separated.")] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute.")] = None,
    max_concurrent: Annotated[int | None, typer.Option(min=1, help="Streams open at once.")] = None,
    budget_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens per period (needs --period).")
    ] = None,
    period: Annotated[str | None, typer.Option(help="Budget period: day or month.")] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expiry date, YYYY-MM-DD (UTC midnight).")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a key. Its secret is printed once and never stored."""
    if period not in (None, "day", "month"):
        raise _fail("--period must be day or month", 2)
    if budget_tokens and not period:
        raise _fail("--budget-tokens needs --period day|month", 2)
    expires_at = None
    if expires is not None:
        try:
            day = dt.date.fromisoformat(expires)
        except ValueError:
            raise _fail(f"--expires {expires!r} is not a date (YYYY-MM-DD)", 2) from None
        expires_at = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None

    async def action(store: KeyStore) -> tuple[ApiKey, str]:
        return await store.create(
            name=name,
            models=allowed,
            rpm=rpm,
            tpm=tpm,
            max_concurrent=max_concurrent,
            budget_tokens=budget_tokens,
            budget_period=period,
            expires_at=expires_at,
        )

    key, secret = _with_keys(config, data_dir, action)
    typer.echo(secret)
    typer.echo(f"created {key.id} ({key.name}); the key above is shown only now", err=True)


@keys_app.command("list")
def list_keys(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List keys (never their secrets)."""

    async def action(store: KeyStore) -> list[ApiKey]:
        return await store.all()

    for key in _with_keys(config, data_dir, action):
        typer.echo(_row(key))


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (see `sluice keys list`).")],
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke a key: every gateway refuses it within two seconds."""

    async def action(store: KeyStore) -> ApiKey:
        return await store.revoke(key_id)

    async def revoked(store: KeyStore) -> tuple[ApiKey, bool]:
        key = await action(store)
        return key, not await store.any_active() and await store.auth_required()

    key, last = _with_keys(config, data_dir, revoked)
    typer.echo(f"revoked {key.id} ({key.name})")
    if last:
        typer.echo(
            "that was the last active key: the gateway stays closed (only the master key "
            "gets in); `sluice keys auth off` opens it",
            err=True,
        )


@keys_app.command("auth")
def auth(
    state: Annotated[
        str | None, typer.Argument(help="on: require a key; off: open to everyone; none: show.")
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show or decide whether the gateway requires authentication. The first key created
    turns it on; only this command turns it off (a master key keeps it on regardless)."""
    if state not in (None, "on", "off"):
        raise _fail(f"auth takes 'on' or 'off', not {state!r}", 2)

    async def action(store: KeyStore) -> bool:
        if state is not None:
            await store.set_auth_required(state == "on")
        return await store.auth_required()

    required = _with_keys(config, data_dir, action)
    typer.echo(f"authentication {'required' if required else 'not required (open gateway)'}")


def any_authentication(settings: Settings) -> bool:
    """Is a master key set, or does the store say authentication is required?"""
    if settings.master_key is not None:
        return True
    secret = settings.database_url.get_secret_value() if settings.database_url else None

    async def run() -> bool:
        engine = create_engine(database_url(secret, settings.data_dir))
        try:
            await migrate(engine)
            return await KeyStore(engine).auth_required()
        finally:
            await engine.dispose()

    return asyncio.run(run())
