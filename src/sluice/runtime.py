"""The composition root: one process's objects, built from one ``Settings``.

::

    Settings
      ├─ stores       SQLStore (conversations) and KeyStore (keys, usage): one database
      ├─ Redis        ONE client (store/redis_client.py), when ``redis_url`` is set:
      │                 the shared event logs, sessions, rate limits, the budget ledger
      ├─ Engine       models -> providers; generations; the shared event logs
      ├─ policy       Access (keys, master key, sessions), RateLimits, Quota
      └─ ChatService  conversations over the engine, metered by the quota

``sluice serve`` (``http.app.Gateway``), the in-process terminal (``cli.local``) and the
embedding API (``sluice.embed``) all build through ``Runtime.build``; nothing else opens
a store or a Redis connection. Building does no I/O (connections open on first use),
reads no environment, and changes nothing process-wide: the settings were read at the
edge, and process tuning (GC, allocator) belongs to the server (``http/memory.py``).
``aclose`` closes everything in the reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis

from sluice.chat.service import ChatService
from sluice.engine.engine import Engine
from sluice.policy.access import Access
from sluice.policy.budgets import MemoryLedger, RedisLedger
from sluice.policy.limits import RateLimits
from sluice.policy.quota import Quota
from sluice.policy.sessions import MemorySessions, RedisSessions, Sessions
from sluice.providers.base import ProviderFactory
from sluice.settings import Settings
from sluice.store.conversations import SQLStore
from sluice.store.database import create_engine, database_url
from sluice.store.keys import KeyStore
from sluice.store.redis_client import connect
from sluice.store.shared_log import RedisEventLogs


@dataclass(eq=False)
class Runtime:
    settings: Settings
    store: SQLStore
    keys: KeyStore
    #: The one Redis client of the process, or None (state in memory, one process).
    redis: redis.Redis | None
    #: The event logs other instances resume from (on ``redis``), or None.
    shared: RedisEventLogs | None
    engine: Engine
    sessions: Sessions
    access: Access
    limits: RateLimits
    quota: Quota
    chat: ChatService

    @classmethod
    def build(
        cls, settings: Settings, *, factories: dict[str, ProviderFactory] | None = None
    ) -> Runtime:
        """Everything, wired. ``factories`` replaces the registered providers (tests).
        Raises ConfigError for settings that cannot work (a bad model table or URL)."""
        secret = settings.database_url.get_secret_value() if settings.database_url else None
        store = SQLStore(create_engine(database_url(secret, settings.data_dir)))
        keys = KeyStore(store.engine)
        client = connect(settings.redis_url.get_secret_value()) if settings.redis_url else None
        shared = (
            RedisEventLogs(
                client,
                retention_seconds=settings.stream_retention_seconds,
                prefix=settings.redis_prefix,
            )
            if client is not None
            else None
        )
        engine = Engine(settings, factories=factories, shared=shared)
        sessions: Sessions = (
            RedisSessions(client, settings.session_seconds, settings.redis_prefix)
            if client is not None
            else MemorySessions(settings.session_seconds)
        )
        master = settings.master_key.get_secret_value() if settings.master_key else None
        limits = RateLimits(
            client,
            prefix=settings.redis_prefix,
            default_concurrency=settings.default_key_concurrency,
        )
        quota = Quota(
            keys,
            limits,
            {m.name: m for m in settings.models},
            ledger=RedisLedger(client, settings.redis_prefix) if client else MemoryLedger(),
        )
        return cls(
            settings=settings,
            store=store,
            keys=keys,
            redis=client,
            shared=shared,
            engine=engine,
            sessions=sessions,
            access=Access(keys, master, sessions),
            limits=limits,
            quota=quota,
            chat=ChatService(engine, store, quota=quota),
        )

    async def aclose(self) -> None:
        """Close in the reverse order of building: the answers first (their savers and
        metering still write), the shared log before the client it writes through, the
        database last."""
        await self.engine.aclose()
        await self.chat.settle()
        await self.quota.settle()
        await self.limits.aclose()
        if self.shared is not None:
            await self.shared.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.store.aclose()
