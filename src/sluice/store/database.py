"""Opening the relational store: SQLite by default (a file in the data directory),
PostgreSQL by URL; schema migrations applied on open, one process at a time."""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from sluice.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"

#: The PostgreSQL advisory lock migrations run under ("sluice" in ASCII). Advisory locks
#: are per database, so gateways on different databases never wait for each other.
MIGRATION_LOCK = 0x736C75696365
#: How often a process waiting for another's SQLite migration checks the lock file.
_LOCK_POLL_SECONDS = 0.05


def default_data_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/sluice``, else ``~/.local/share/sluice``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "sluice"


def async_url(url: str) -> str:
    """A database URL with the async driver sluice uses for its scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"database URL {url!r} has no scheme (postgresql://… or sqlite://…)")
    base = scheme.split("+", 1)[0]
    if base in ("postgresql", "postgres"):
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise ConfigError(f"database URL scheme {scheme!r} is not supported (postgresql, sqlite)")


def sqlite_url(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'sluice.db'}"


def create_engine(url: str) -> AsyncEngine:
    # Statement parameters are chat text and key hashes: never in an exception message or
    # a log line.
    # SQLite: a writer waits up to 30 s for another (the request log's batches, the
    # usage rows, answers being saved) instead of failing after the driver's 5.
    connect_args = {"timeout": 30} if url.startswith("sqlite") else {}
    engine = create_async_engine(
        url, pool_pre_ping=True, hide_parameters=True, connect_args=connect_args
    )
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine.sync_engine, "do_connect")
        def _directory(*_: Any) -> None:
            # Made when first used, not when the engine is built: building does no I/O
            # (an embedding program that never stores anything leaves no directory).
            _make_directory(engine)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL: readers never block the writer saving a streaming answer.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent).

    Workers and instances starting together on a fresh database would otherwise race to
    create the same tables; under the lock the first migrates and the others find the
    schema at head. PostgreSQL: a transaction-scoped advisory lock, released by the
    commit. SQLite: ``flock`` on a file next to the database, taken before the first
    connection (which also switches the file to WAL)."""

    def upgrade(connection: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with _sqlite_file_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(upgrade)


@asynccontextmanager
async def _sqlite_file_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield  # not SQLite, or no file another process could share
        return
    path = Path(database)
    _make_directory(engine)
    descriptor = os.open(path.with_name(path.name + ".migrate-lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Polled rather than a blocking flock in a thread: a cancelled start-up must not
        # leave a thread behind that takes the lock later.
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(_LOCK_POLL_SECONDS)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def database_url(database_url: str | None, data_dir: Path | None) -> str:
    """The async URL of the configured database: PostgreSQL (or SQLite) by URL, else the
    SQLite file in the data directory (made on first connection)."""
    if database_url:
        return async_url(database_url)
    return f"sqlite+aiosqlite:///{(data_dir or default_data_dir()) / 'sluice.db'}"


def _make_directory(engine: AsyncEngine) -> None:
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
