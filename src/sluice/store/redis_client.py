"""The Redis client of a process: one per process, shared by everything that keeps state
in Redis (sessions, rate limits, budgets, the shared event logs), so one URL is one
connection pool, not one per feature.

Built to fail fast: an unreachable Redis must become a quick 503 (fail closed) on a
request path and a logged, retried outage in the background tasks, never a request
hanging on a socket. Blocking reads stay well inside the socket timeout (the shared
log's ``XREAD`` blocks for at most a second; pub/sub reads block without a timeout).
"""

from __future__ import annotations

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

#: Seconds to open a connection, and to wait for any one reply.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0


def connect(url: str) -> redis.Redis:
    """A client for ``url`` (no connection is made until the first command)."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        # One quick retry, not redis-py's default seconds of backoff.
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
    )
