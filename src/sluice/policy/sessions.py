"""Browser sessions: a key exchanged once for an HttpOnly cookie.

A session is a random token (stored hashed) with the key it stands for, a CSRF token the
page must echo on state-changing requests, and an expiry renewed on use (sliding). A
master-key session also keeps a fingerprint of the master key (see
``policy.access.master_fingerprint``), so it dies when the key changes. In memory by
default; in Redis when configured, under the deployment's key prefix, so every instance
of one deployment knows every session and no other deployment sharing the Redis does.
Each key holds at most ``PER_KEY`` sessions (signing in again ends its least recently
used one), so no principal can sign out another by signing in many times, nor grow
memory or Redis without bound. Redis unreachable is a 503 (fail closed), never a 500.
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


#: Live sessions per key (the master key counts as one): signing in once more ends that
#: key's least recently used session, never another principal's.
PER_KEY = 64


def _holder(key_id: str, master: bool) -> str:
    return "master" if master else key_id


class MemorySessions:
    #: Sessions at most, least recently used first out: a last resort, since PER_KEY
    #: already bounds what one key can hold.
    LIMIT = 100_000

    def __init__(self, lifetime: float) -> None:
        self._lifetime = lifetime
        #: In least-recently-used order (a use moves a session to the end).
        self._sessions: dict[str, Session] = {}
        self._by_holder: dict[str, dict[str, None]] = {}

    async def create(self, key_id: str, master: bool, fingerprint: str = "") -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(
            key_id, master, secrets.token_urlsafe(24), time.time() + self._lifetime, fingerprint
        )
        held = self._by_holder.setdefault(_holder(key_id, master), {})
        while len(held) >= PER_KEY:
            self._drop(next(iter(held)))
        while len(self._sessions) >= self.LIMIT:
            self._drop(next(iter(self._sessions)))
        digest = _digest(token)
        self._sessions[digest] = session
        self._by_holder.setdefault(_holder(key_id, master), {})[digest] = None
        return token, session

    def _drop(self, digest: str) -> None:
        session = self._sessions.pop(digest, None)
        if session is None:
            return
        holder = _holder(session.key_id, session.master)
        held = self._by_holder.get(holder)
        if held is not None:
            held.pop(digest, None)
            if not held:
                del self._by_holder[holder]

    async def get(self, token: str) -> Session | None:
        digest = _digest(token)
        session = self._sessions.get(digest)
        now = time.time()
        if session is None:
            return None
        if session.expires_at <= now:
            self._drop(digest)
            return None
        renewed = Session(
            session.key_id, session.master, session.csrf, now + self._lifetime, session.fingerprint
        )
        # Re-inserted at the end: now the most recently used, here and among its key's.
        del self._sessions[digest]
        self._sessions[digest] = renewed
        held = self._by_holder[_holder(session.key_id, session.master)]
        del held[digest]
        held[digest] = None
        return renewed

    async def delete(self, token: str) -> None:
        self._drop(_digest(token))


class RedisSessions:
    def __init__(self, client: redis.Redis, lifetime: float, prefix: str = "sluice") -> None:
        self._client = client
        self._lifetime = int(lifetime)
        self._prefix = f"{prefix}:session:"
        self._held = f"{prefix}:sessions-of:"

    def _key(self, token: str) -> str:
        return self._prefix + _digest(token)

    async def create(self, key_id: str, master: bool, fingerprint: str = "") -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        data = orjson.dumps(
            {"key_id": key_id, "master": master, "csrf": csrf, "fingerprint": fingerprint}
        )
        digest = _digest(token)
        held = self._held + _holder(key_id, master)
        now = time.time()
        # Each key's sessions by last use: past PER_KEY, that key's least recently used
        # end (never another principal's), so one key cannot grow Redis without bound.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._prefix + digest, data, ex=self._lifetime)
            pipe.zadd(held, {digest: now})
            pipe.zremrangebyscore(held, "-inf", now - self._lifetime)
            pipe.zrange(held, 0, -PER_KEY - 1)
            pipe.expire(held, self._lifetime)
            replies: Any = await _redis(pipe.execute())
        surplus: list[bytes] = replies[3]
        if surplus:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.zrem(held, *surplus)
                pipe.delete(*(self._prefix + old.decode() for old in surplus))
                await _redis(pipe.execute())
        return token, Session(key_id, master, csrf, time.time() + self._lifetime, fingerprint)

    async def get(self, token: str) -> Session | None:
        key = self._key(token)
        raw: Any = await _redis(self._client.getex(key, ex=self._lifetime))  # read and renew
        if raw is None:
            return None
        data = orjson.loads(raw)
        held = self._held + _holder(data["key_id"], data["master"])
        await _redis(self._client.zadd(held, {_digest(token): time.time()}, xx=True))
        return Session(
            data["key_id"],
            data["master"],
            data["csrf"],
            time.time() + self._lifetime,
            data.get("fingerprint", ""),
        )

    async def delete(self, token: str) -> None:
        digest = _digest(token)
        await _redis(self._client.delete(self._prefix + digest))


async def _redis(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except (RedisError, OSError) as exc:
        raise Unavailable(
            f"Sessions are unavailable (shared state unreachable: {type(exc).__name__}); "
            "retry shortly."
        ) from None
