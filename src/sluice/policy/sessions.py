"""Browser sessions: a key exchanged once for an HttpOnly cookie.

A session is a random token (stored hashed) with the key it stands for, a CSRF token the
page must echo on state-changing requests, and an expiry renewed on use (sliding). A
master-key session also keeps a fingerprint of the master key (see
``policy.access.master_fingerprint``), so it dies when the key changes. In memory by
default; in Redis when configured, under the deployment's key prefix, so every instance
of one deployment knows every session and no other deployment sharing the Redis does.
Redis unreachable is a 503 (fail closed), never a 500.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from sluice.errors import Unavailable

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Session:
    #: The API key id it stands for, or "" for the master key.
    key_id: str
    master: bool
    csrf: str
    expires_at: float
    #: For a master session: the master key's fingerprint when it was opened.
    fingerprint: str = ""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions(Protocol):
    async def create(
        self, key_id: str, master: bool, fingerprint: str = ""
    ) -> tuple[str, Session]: ...

    async def get(self, token: str) -> Session | None: ...

    async def delete(self, token: str) -> None: ...


class MemorySessions:
    #: Sessions at most; the oldest go first (sign-in is unauthenticated: bound it).
    LIMIT = 100_000

    def __init__(self, lifetime: float) -> None:
        self._lifetime = lifetime
        self._sessions: dict[str, Session] = {}

    async def create(self, key_id: str, master: bool, fingerprint: str = "") -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(
            key_id, master, secrets.token_urlsafe(24), time.time() + self._lifetime, fingerprint
        )
        while len(self._sessions) >= self.LIMIT:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[_digest(token)] = session
        return token, session

    async def get(self, token: str) -> Session | None:
        digest = _digest(token)
        session = self._sessions.get(digest)
        now = time.time()
        if session is None or session.expires_at <= now:
            self._sessions.pop(digest, None)
            return None
        renewed = Session(
            session.key_id, session.master, session.csrf, now + self._lifetime, session.fingerprint
        )
        self._sessions[digest] = renewed
        return renewed

    async def delete(self, token: str) -> None:
        self._sessions.pop(_digest(token), None)


class RedisSessions:
    def __init__(self, client: redis.Redis, lifetime: float, prefix: str = "sluice") -> None:
        self._client = client
        self._lifetime = int(lifetime)
        self._prefix = f"{prefix}:session:"

    def _key(self, token: str) -> str:
        return self._prefix + _digest(token)

    async def create(self, key_id: str, master: bool, fingerprint: str = "") -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        data = orjson.dumps(
            {"key_id": key_id, "master": master, "csrf": csrf, "fingerprint": fingerprint}
        )
        await _redis(self._client.set(self._key(token), data, ex=self._lifetime))
        return token, Session(key_id, master, csrf, time.time() + self._lifetime, fingerprint)

    async def get(self, token: str) -> Session | None:
        key = self._key(token)
        raw: Any = await _redis(self._client.getex(key, ex=self._lifetime))  # read and renew
        if raw is None:
            return None
        data = orjson.loads(raw)
        return Session(
            data["key_id"],
            data["master"],
            data["csrf"],
            time.time() + self._lifetime,
            data.get("fingerprint", ""),
        )

    async def delete(self, token: str) -> None:
        await _redis(self._client.delete(self._key(token)))


async def _redis(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise Unavailable(
            f"Sessions are unavailable (shared state unreachable: {type(exc).__name__}); "
            "retry shortly."
        ) from None
