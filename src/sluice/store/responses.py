"""Stored Responses API responses (the ``responses`` table).

::

    ResponseStore ── save(StoredResponse)          insert or replace, one statement;
                                                   rows older than ``keep_seconds`` are
                                                   swept on writes, at most once a minute
                  ── update(StoredResponse) -> bool     only a row that exists
                  ── get(id) -> StoredResponse | None
                  ── delete(id) -> bool

Ownership is the caller's to check (``sluice.owners.may_reach``): the store reads and
writes rows by id only, and an id that belongs to someone else must look like one that
does not exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.schema import responses


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    model: str
    status: str
    created_at: float
    #: The Response object (while in progress: what the request asked for).
    body: dict[str, Any]
    #: The chat messages of the conversation it ended; None until it finished.
    history: list[dict[str, Any]] | None = None


#: Seconds between sweeps of expired rows.
SWEEP_SECONDS = 60.0


class ResponseStore:
    def __init__(self, engine: AsyncEngine, *, keep_seconds: float = 30 * 86400) -> None:
        self._engine = engine
        self._keep = keep_seconds
        self._swept = 0.0

    async def save(self, stored: StoredResponse) -> None:
        row = {
            "id": stored.id,
            "owner": stored.owner,
            "model": stored.model,
            "status": stored.status,
            "created_at": stored.created_at,
            "updated_at": time.time(),
            "body": stored.body,
            "history": stored.history,
        }
        insert = postgresql_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(responses).values(**row)
        statement = statement.on_conflict_do_update(
            index_elements=[responses.c.id],
            set_={name: statement.excluded[name] for name in row if name not in ("id", "owner")},
        )
        now = time.time()
        async with self._engine.begin() as connection:
            await connection.execute(statement)
            if now - self._swept >= SWEEP_SECONDS:
                self._swept = now
                await connection.execute(
                    delete(responses).where(responses.c.updated_at < now - self._keep)
                )

    async def update(self, stored: StoredResponse) -> bool:
        """Replace a row that exists (False if there is none: deleted meanwhile)."""
        values = {
            "model": stored.model,
            "status": stored.status,
            "updated_at": time.time(),
            "body": stored.body,
            "history": stored.history,
        }
        statement = update(responses).where(responses.c.id == stored.id).values(**values)
        async with self._engine.begin() as connection:
            result = await connection.execute(statement)
        return bool(result.rowcount)

    async def get(self, response_id: str) -> StoredResponse | None:
        query = select(responses).where(responses.c.id == response_id)
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).mappings().one_or_none()
        if row is None:
            return None
        return StoredResponse(
            id=row["id"],
            owner=row["owner"],
            model=row["model"],
            status=row["status"],
            created_at=row["created_at"],
            body=row["body"],
            history=row["history"],
        )

    async def delete(self, response_id: str) -> bool:
        async with self._engine.begin() as connection:
            statement = delete(responses).where(responses.c.id == response_id)
            result = await connection.execute(statement)
        return bool(result.rowcount)
