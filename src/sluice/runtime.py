"""The composition root: one process's objects, built from one ``Settings``.

::

    Settings
      ├─ stores       SQLStore (conversations) and KeyStore (keys, usage): one database
      ├─ Redis        ONE client (store/redis_client.py), when ``redis_url`` is set:
      │                 the shared event logs, sessions, rate limits, the budget ledger
      ├─ Engine       models -> providers; generations; the shared event logs
      ├─ policy       Access (keys, master key, sessions), RateLimits, Quota
      ├─ cache        ResponseCache: cached answers (memory, database or Redis) and
      │                 identical requests in flight sharing one generation
      └─ ChatService  conversations over the engine, metered by the quota

``sluice serve`` (``http.app.Gateway``), the in-process terminal (``cli.local``) and the
embedding API (``sluice.embed``) all build through ``Runtime.build``; nothing else opens
a store or a Redis connection. Building does no I/O (connections open on first use),
reads no environment, and changes nothing process-wide: the settings were read at the
edge, and process tuning (GC, allocator) belongs to the server (``http/memory.py``).
Traces are the one exception, and only when the edge asks for them (``tracing``): the
span exporter runs its own thread, and the OpenTelemetry SDK reads its own tuning
variables (sampler, batching, export headers and timeout).
``aclose`` closes everything in the reverse order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as redis

from sluice.cache.responses import ResponseCache
from sluice.chat.service import ChatService
from sluice.engine.engine import Engine
from sluice.policy.access import Access
from sluice.policy.budgets import MemoryLedger, RedisLedger
from sluice.policy.limits import RateLimits
from sluice.policy.quota import Quota
from sluice.policy.sessions import MemorySessions, RedisSessions, Sessions
from sluice.providers.base import ProviderFactory
from sluice.settings import Settings
from sluice.store.answer_cache import AnswerStore, MemoryAnswers, RedisAnswers, SQLAnswers
from sluice.store.conversations import SQLStore
from sluice.store.database import create_engine, database_url
from sluice.store.keys import KeyStore
from sluice.store.redis_client import connect
from sluice.store.request_log import RequestLogStore
from sluice.store.shared_log import RedisEventLogs
from sluice.telemetry.alerts import Alerts
from sluice.telemetry.metrics import Metrics
from sluice.telemetry.requests import Telemetry
from sluice.telemetry.traces import TraceExport, start_tracing

if TYPE_CHECKING:
    from sluice.telemetry.spans import Tracing


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
    cache: ResponseCache
    chat: ChatService
    metrics: Metrics
    telemetry: Telemetry
    alerts: Alerts
    #: Spans exported over OTLP, when the edge asked for them; None: tracing is off.
    tracing: Tracing | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        factories: dict[str, ProviderFactory] | None = None,
        tracing: TraceExport | None = None,
    ) -> Runtime:
        """Everything, wired. ``factories`` replaces the registered providers (tests);
        ``tracing`` (read from the environment by the server's edge) turns traces on.
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
        metrics = Metrics(providers={m.name: m.provider for m in settings.models})
        observer = metrics if settings.telemetry else None
        tracer = start_tracing(tracing, settings.models) if tracing is not None else None
        engine = Engine(
            settings,
            factories=factories,
            shared=shared,
            observer=observer,
            on_attempt=tracer.attempt if tracer is not None else None,
        )
        if settings.telemetry:
            engine.guardrails.on_match = metrics.guardrail_matched
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
        answers: AnswerStore | None = None
        if settings.cache == "memory":
            answers = MemoryAnswers(settings.cache_memory_bytes)
        elif settings.cache == "database":
            answers = SQLAnswers(store.engine)
        elif settings.cache == "redis":
            assert client is not None  # Settings refuses cache = "redis" without redis_url
            answers = RedisAnswers(client, settings.redis_prefix)
        cache = ResponseCache(settings, engine, answers, client=client, metrics=observer)
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
            cache=cache,
            chat=ChatService(engine, store, quota=quota, cache=cache),
            metrics=metrics,
            telemetry=Telemetry(
                metrics,
                RequestLogStore(store.engine) if settings.request_log_days > 0 else None,
                {m.name: m for m in settings.models},
                keep_days=settings.request_log_days,
            ),
            alerts=Alerts(settings.alerts, engine.recent, metrics),
            tracing=tracer,
        )

    async def aclose(self) -> None:
        """Close in the reverse order of building: the answers first (their savers and
        metering still write), the shared log before the client it writes through, the
        database last."""
        await self.engine.aclose()
        await self.metrics.aclose()
        await self.alerts.aclose()
        await self.chat.settle()
        await self.telemetry.aclose()
        if self.tracing is not None:
            await self.tracing.aclose()  # after the engine: its attempts' spans are over
        await self.cache.settle()
        await self.quota.settle()
        await self.limits.aclose()
        if self.shared is not None:
            await self.shared.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        await self.store.aclose()
