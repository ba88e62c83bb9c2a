"""API keys and the usage log, in the same database as conversations.

Keys are ``sk-`` followed by 43 url-safe characters, shown once at creation and stored
only as a sha256 hash (a lookup by hash reveals nothing a timing attack could use; the
final comparison is constant-time anyway). Spend is recorded from real usage per answer
and summed per key per period for budgets.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluice.errors import NotFound
from sluice.store.conversations import new_id
from sluice.store.schema import api_keys, gateway_state, usage

PERIODS = ("day", "month")
AUTH_REQUIRED = "auth_required"


async def _set_state(connection: AsyncConnection, name: str, value: str) -> None:
    # Delete-then-insert in one transaction: portable across SQLite and PostgreSQL.
    await connection.execute(delete(gateway_state).where(gateway_state.c.name == name))
    await connection.execute(
        insert(gateway_state).values(name=name, value=value, updated_at=time.time())
    )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    hash: str
    prefix: str
    models: list[str] | None
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    budget_tokens: int | None
    budget_cost: float | None
    budget_period: str | None
    expires_at: float | None
    revoked_at: float | None
    created_at: float

    def usable(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def public(self) -> dict[str, Any]:
        """Everything but the hash."""
        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "prefix": self.prefix,
            "models": self.models,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_concurrent": self.max_concurrent,
            "budget_tokens": self.budget_tokens,
            "budget_cost": self.budget_cost,
            "budget_period": self.budget_period,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "created_at": self.created_at,
        }


def period_start(period: str, now: float | None = None) -> float:
    """Start of the current budget period (UTC calendar day or month)."""
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp()


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(
        self,
        *,
        name: str,
        models: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_concurrent: int | None = None,
        budget_tokens: int | None = None,
        budget_cost: float | None = None,
        budget_period: str | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret (which is not stored)."""
        secret = new_key()
        row: dict[str, Any] = {
            "id": new_id(),
            "name": name,
            "hash": hash_key(secret),
            "prefix": secret[:8],
            "models": models,
            "rpm": rpm,
            "tpm": tpm,
            "max_concurrent": max_concurrent,
            "budget_tokens": budget_tokens,
            "budget_cost": budget_cost,
            "budget_period": budget_period,
            "expires_at": expires_at,
            "revoked_at": None,
            "created_at": time.time(),
        }
        async with self.engine.begin() as connection:
            await connection.execute(insert(api_keys).values(**row))
            # The first key closes the gateway, for good: only an explicit decision
            # (set_auth_required) opens it again, never a count of keys.
            await _set_state(connection, AUTH_REQUIRED, "true")
        return ApiKey(**row), secret

    async def auth_required(self) -> bool:
        """The stored decision: does this gateway require authentication?"""
        async with self.engine.connect() as connection:
            value = (
                await connection.execute(
                    select(gateway_state.c.value).where(gateway_state.c.name == AUTH_REQUIRED)
                )
            ).scalar_one_or_none()
        return value == "true"

    async def set_auth_required(self, required: bool) -> None:
        async with self.engine.begin() as connection:
            await _set_state(connection, AUTH_REQUIRED, "true" if required else "false")

    async def find(self, secret: str) -> ApiKey | None:
        """The key with this secret, or None."""
        digest = hash_key(secret)
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(select(api_keys).where(api_keys.c.hash == digest))
            ).first()
        if row is None or not hmac.compare_digest(row.hash, digest):
            return None
        return ApiKey(**row._mapping)

    async def get(self, key_id: str) -> ApiKey:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(select(api_keys).where(api_keys.c.id == key_id))
            ).first()
        if row is None:
            raise NotFound(f"No API key with id {key_id!r}.", param="id")
        return ApiKey(**row._mapping)

    async def all(self) -> list[ApiKey]:
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(select(api_keys).order_by(api_keys.c.created_at))
            ).all()
        return [ApiKey(**row._mapping) for row in rows]

    async def any_active(self) -> bool:
        async with self.engine.connect() as connection:
            count = (
                await connection.execute(
                    select(func.count())
                    .select_from(api_keys)
                    .where(api_keys.c.revoked_at.is_(None))
                )
            ).scalar_one()
        return bool(count)

    async def revoke(self, key_id: str) -> ApiKey:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id)
                .where(api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        key = await self.get(key_id)
        if result.rowcount == 0 and key.revoked_at is None:
            raise NotFound(f"No API key with id {key_id!r}.", param="id")
        return key

    async def record_usage(self, rows: list[dict[str, Any]]) -> None:
        """Write usage records (``usage_row``), one statement for all of them."""
        if rows:
            async with self.engine.begin() as connection:
                await connection.execute(insert(usage), rows)

    async def spent(self, key_id: str, since: float) -> tuple[int, float]:
        """Tokens and cost a key has used since ``since``."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(
                        func.coalesce(
                            func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0
                        ),
                        func.coalesce(func.sum(usage.c.cost), 0.0),
                    )
                    .where(usage.c.key_id == key_id)
                    .where(usage.c.at >= since)
                )
            ).one()
        return int(row[0]), float(row[1])


def usage_row(
    *,
    key_id: str | None,
    owner: str,
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost: float | None,
    estimated: bool,
    stream_id: str | None,
) -> dict[str, Any]:
    """One usage record, as ``KeyStore.record_usage`` writes it."""
    return {
        "key_id": key_id,
        "owner": owner,
        "model": model,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cost": cost,
        "estimated": estimated,
        "stream_id": stream_id,
        "at": time.time(),
    }
