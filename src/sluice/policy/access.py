"""Who is asking: the master key, an API key (Bearer), or a browser session (cookie).

Whether authentication is required is a stored decision (``gateway_state``), never a
count of keys: the first key created closes the gateway, a configured master key closes
it, and only an explicit ``sluice keys auth off`` opens it again — revoking the last key
leaves it closed. An open gateway lets everyone in as the one anonymous principal. Key
lookups are cached for two seconds (misses too, in a bounded table), so a revoked key
is refused within two seconds everywhere, open WebSockets included. A master-key
session is bound to a fingerprint of the master key it was opened with: it dies when
the key changes or goes. Secrets never appear in errors or logs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from sluice.errors import AuthenticationError, SluiceError, Unavailable
from sluice.owners import ADMIN, ANONYMOUS, LOCAL, key_owner
from sluice.policy.sessions import Session, Sessions
from sluice.store.keys import ApiKey, KeyStore, hash_key

logger = logging.getLogger("sluice.policy")
_T = TypeVar("_T")

_CACHE_SECONDS = 2.0
#: Cached lookups at most: a flood of wrong keys must not grow memory.
_CACHE_ENTRIES = 10_000


def master_fingerprint(master_key: str | None) -> str:
    """What a master session remembers of the key it was opened with (not the key)."""
    if not master_key:
        return ""
    return hmac.new(master_key.encode(), b"sluice master session", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    #: None for the master key and for an open gateway.
    key: ApiKey | None = None
    master: bool = False
    #: Authenticated by a session cookie (state-changing requests then need CSRF).
    session: Session | None = None

    #: The person running the in-process CLI on the data directory.
    local: bool = False
    #: Overrides who what it creates belongs to (see ``local_user``).
    stored_as: str | None = None

    @property
    def owner(self) -> str:
        """What the things this principal creates are stored as owned by."""
        if self.stored_as is not None:
            return self.stored_as
        if self.master:
            return ADMIN
        if self.key is not None:
            return key_owner(self.key.id)
        return LOCAL if self.local else ANONYMOUS

    @property
    def key_names(self) -> tuple[str, str] | None:
        """The key's id and name (what key-scoped settings name), None without a key."""
        return (self.key.id, self.key.name) if self.key is not None else None

    @property
    def admin(self) -> bool:
        """May reach every owner's things (explicitly)."""
        return self.master or self.local

    @property
    def label(self) -> str:
        """How logs may name it: never the secret."""
        if self.master:
            return "master"
        return f"key:{self.key.id}" if self.key else "open"


OPEN = Principal()


def local_user(auth_required: bool) -> Principal:
    """The in-process CLI's user. It holds the database file, so it may reach everything
    there. What it creates belongs to the open gateway (anonymous) while the gateway
    requires no authentication — anyone on loopback could read it anyway, and the page
    shows it — and to the local user alone once authentication is required."""
    return Principal(local=True, stored_as=LOCAL if auth_required else ANONYMOUS)


class Access:
    def __init__(self, keys: KeyStore, master_key: str | None, sessions: Sessions) -> None:
        self._keys = keys
        self._master = master_key
        self.fingerprint = master_fingerprint(master_key)
        self.sessions = sessions
        self._by_hash: dict[str, tuple[float, ApiKey | None]] = {}
        self._by_id: dict[str, tuple[float, ApiKey | None]] = {}
        self._required: tuple[float, bool] = (0.0, False)
        self._refreshing: asyncio.Future[bool] | None = None
        #: Key lookups in flight, by secret hash or key id.
        self._loading: dict[str, asyncio.Future[ApiKey | None]] = {}

    async def required(self) -> bool:
        if self._master:
            return True
        at, value = self._required
        if time.monotonic() - at <= _CACHE_SECONDS:
            return value
        # One lookup at a time: a burst of requests must not become a burst of queries.
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._keys.auth_required())
        # The database down means we cannot know: fail closed.
        value = await _store_call(asyncio.shield(self._refreshing))
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
        if (
            session is not None
            and session.master
            and (
                not self.fingerprint
                or not hmac.compare_digest(session.fingerprint, self.fingerprint)
            )
        ):
            # Opened with a master key that has since changed or gone.
            await self.sessions.delete(token)
            session = None
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
        except SluiceError:
            return None  # NotFound: the key was deleted

    async def _cached(
        self,
        cache: dict[str, tuple[float, ApiKey | None]],
        name: str,
        load: Callable[[str], Awaitable[ApiKey | None]],
        argument: str,
    ) -> ApiKey | None:
        hit = cache.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _CACHE_SECONDS:
            return hit[1]
        # One lookup per key at a time: when an entry lapses under load, the requests
        # that find it lapsed wait for one query instead of each making their own.
        loading = self._loading.get(name)
        if loading is None:
            loading = self._loading[name] = asyncio.ensure_future(load(argument))
            loading.add_done_callback(lambda _: self._loading.pop(name, None))
        key = await _store_call(asyncio.shield(loading))
        cache.pop(name, None)
        while len(cache) >= _CACHE_ENTRIES:
            del cache[next(iter(cache))]  # the oldest entry
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


async def _store_call(call: Awaitable[_T]) -> _T:
    """A key-store lookup; the database down is a 503 (fail closed), never a 500."""
    try:
        return await call
    except (SQLAlchemyError, OSError) as exc:
        logger.warning("key store unreachable: %s", type(exc).__name__)
        raise Unavailable("The gateway cannot check keys right now; retry shortly.") from None
