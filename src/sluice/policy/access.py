"""Who is asking: the master key, an API key (Bearer), or a browser session (cookie).

Authentication is required as soon as a master key is configured or any API key
exists; an open local gateway (neither) lets everyone in. Key lookups are cached for two
seconds, so a revoked key is refused within two seconds everywhere, mid-session too.
Secrets never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass

from sluice.errors import AuthenticationError
from sluice.policy.sessions import Session, Sessions
from sluice.store.keys import ApiKey, KeyStore, hash_key

_CACHE_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Principal:
    #: None for the master key and for an open gateway.
    key: ApiKey | None = None
    master: bool = False
    #: Authenticated by a session cookie (state-changing requests then need CSRF).
    session: Session | None = None

    @property
    def label(self) -> str:
        """How logs may name it: never the secret."""
        if self.master:
            return "master"
        return f"key:{self.key.id}" if self.key else "open"


OPEN = Principal()


class Access:
    def __init__(self, keys: KeyStore, master_key: str | None, sessions: Sessions) -> None:
        self._keys = keys
        self._master = master_key
        self.sessions = sessions
        self._by_hash: dict[str, tuple[float, ApiKey | None]] = {}
        self._by_id: dict[str, tuple[float, ApiKey | None]] = {}
        self._required: tuple[float, bool] = (0.0, False)
        self._refreshing: asyncio.Future[bool] | None = None

    async def required(self) -> bool:
        if self._master:
            return True
        at, value = self._required
        if time.monotonic() - at <= _CACHE_SECONDS:
            return value
        # One lookup at a time: a burst of requests must not become a burst of queries.
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._keys.any_active())
        value = await asyncio.shield(self._refreshing)
        self._required = (time.monotonic(), value)
        return value

    def forget(self) -> None:
        """Keys changed here: drop every cached lookup."""
        self._by_hash.clear()
        self._by_id.clear()
        self._required = (0.0, False)

    async def authenticate(
        self, authorization: bytes | None, session_token: str | None
    ) -> Principal:
        if not await self.required():
            return OPEN
        if authorization:
            scheme, _, secret = authorization.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise AuthenticationError("The Authorization header must be 'Bearer <API key>'.")
            return await self.check_secret(secret.strip())
        if session_token:
            return await self._from_session(session_token)
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-…', "
            "or sign in on the web page."
        )

    async def check_secret(self, secret: str) -> Principal:
        if self._master and hmac.compare_digest(secret.encode(), self._master.encode()):
            return Principal(master=True)
        key = await self._cached(self._by_hash, hash_key(secret), self._keys.find, secret)
        return Principal(key=self._usable(key))

    async def _from_session(self, token: str) -> Principal:
        session = await self.sessions.get(token)
        if session is None:
            raise AuthenticationError(
                "Your session has expired or was signed out; sign in again.",
                code="session_expired",
            )
        if session.master:
            return Principal(master=True, session=session)
        key = await self._cached(self._by_id, session.key_id, self._get_key, session.key_id)
        return Principal(key=self._usable(key), session=session)

    async def _get_key(self, key_id: str) -> ApiKey | None:
        try:
            return await self._keys.get(key_id)
        except Exception:
            return None

    @staticmethod
    async def _cached(
        cache: dict[str, tuple[float, ApiKey | None]], name: str, load: object, argument: str
    ) -> ApiKey | None:
        hit = cache.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _CACHE_SECONDS:
            return hit[1]
        key: ApiKey | None = await load(argument)  # type: ignore[operator]
        cache[name] = (now, key)
        return key

    @staticmethod
    def _usable(key: ApiKey | None) -> ApiKey:
        if key is None:
            raise AuthenticationError("Incorrect API key provided.")
        if key.revoked_at is not None:
            raise AuthenticationError("This API key has been revoked.", code="revoked_api_key")
        if not key.usable():
            raise AuthenticationError("This API key has expired.", code="expired_api_key")
        return key
