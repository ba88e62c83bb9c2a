"""Browser sessions: a key exchanged once for an HttpOnly cookie.

A session is a random token (stored hashed) with the key it stands for, a CSRF token the
page must echo on state-changing requests, and an expiry renewed on use (sliding). In
memory by default; in Redis when configured, so every instance knows every session.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis.asyncio as redis


@dataclass(frozen=True, slots=True)
class Session:
    #: The API key id it stands for, or "" for the master key.
    key_id: str
    master: bool
    csrf: str
    expires_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions(Protocol):
    async def create(self, key_id: str, master: bool) -> tuple[str, Session]: ...

    async def get(self, token: str) -> Session | None: ...

    async def delete(self, token: str) -> None: ...


class MemorySessions:
    def __init__(self, lifetime: float) -> None:
        self._lifetime = lifetime
        self._sessions: dict[str, Session] = {}

    async def create(self, key_id: str, master: bool) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(key_id, master, secrets.token_urlsafe(24), time.time() + self._lifetime)
        self._sessions[_digest(token)] = session
        return token, session

    async def get(self, token: str) -> Session | None:
        digest = _digest(token)
        session = self._sessions.get(digest)
        now = time.time()
        if session is None or session.expires_at <= now:
            self._sessions.pop(digest, None)
            return None
        renewed = Session(session.key_id, session.master, session.csrf, now + self._lifetime)
        self._sessions[digest] = renewed
        return renewed

    async def delete(self, token: str) -> None:
        self._sessions.pop(_digest(token), None)


class RedisSessions:
    def __init__(self, client: redis.Redis, lifetime: float) -> None:
        self._client = client
        self._lifetime = int(lifetime)

    def _key(self, token: str) -> str:
        return "sluice:session:" + _digest(token)

    async def create(self, key_id: str, master: bool) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        data = orjson.dumps({"key_id": key_id, "master": master, "csrf": csrf})
        await self._client.set(self._key(token), data, ex=self._lifetime)
        return token, Session(key_id, master, csrf, time.time() + self._lifetime)

    async def get(self, token: str) -> Session | None:
        key = self._key(token)
        raw: Any = await self._client.getex(key, ex=self._lifetime)  # read and renew
        if raw is None:
            return None
        data = orjson.loads(raw)
        return Session(data["key_id"], data["master"], data["csrf"], time.time() + self._lifetime)

    async def delete(self, token: str) -> None:
        await self._client.delete(self._key(token))
