"""The request log's table: rows written in batches, read back with filters.

::

    RequestLogStore ── insert(rows)                 one statement per batch
                    ── sweep(before) -> int         rows older than ``before`` removed
                    ── query(...) -> list[dict]     newest first, or after an id (follow)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluice.store.schema import request_log

#: The columns a row may set (everything but the id).
COLUMNS = tuple(c.name for c in request_log.columns if c.name != "id")


class RequestLogStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        values = [{name: row.get(name) for name in COLUMNS} for row in rows]
        async with self.engine.begin() as connection:
            await connection.execute(insert(request_log), values)

    async def sweep(self, before: float) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(delete(request_log).where(request_log.c.at < before))
        return int(result.rowcount or 0)

    async def query(
        self,
        *,
        model: str | None = None,
        key: str | None = None,
        status: int | None = None,
        status_class: int | None = None,
        since: float | None = None,
        request_id: str | None = None,
        after_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Rows matching every filter given. ``key`` matches a key's id or name;
        ``status_class`` 4 matches 400-499. Newest first — or, with ``after_id``, the
        rows after it, oldest first (for following the log)."""
        table = request_log
        query = select(table)
        if model is not None:
            query = query.where((table.c.model == model) | (table.c.served_by == model))
        if key is not None:
            query = query.where((table.c.key_id == key) | (table.c.key_name == key))
        if status is not None:
            query = query.where(table.c.status == status)
        if status_class is not None:
            low = status_class * 100
            query = query.where(table.c.status >= low, table.c.status < low + 100)
        if since is not None:
            query = query.where(table.c.at >= since)
        if request_id is not None:
            query = query.where(table.c.request_id == request_id)
        if after_id is not None:
            query = query.where(table.c.id > after_id).order_by(table.c.id)
        else:
            query = query.order_by(table.c.id.desc())
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query.limit(limit))).mappings().all()
        # Plain str keys: column names are a str subclass some encoders refuse.
        return [{str(k): v for k, v in row.items()} for row in rows]
