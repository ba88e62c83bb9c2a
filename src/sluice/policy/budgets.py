"""The budget ledger: per key and budget period, what is spent and what answers in flight
have reserved — so concurrent answers cannot each be handed the whole remainder.

An answer reserves before it starts; a reservation is granted only if, in every budget
the key has (tokens; cost where the model has a price)::

    spent + reserved + want <= budget

and settlement, when the answer ends, adds its real usage to ``spent`` and returns its
reservation in one step. ``spent`` starts from the usage log the first time a period is
seen. Cost is kept in integer micro-units of the price's currency.

Two backends behind one Protocol: memory (one process; an ``asyncio.Lock``) and Redis
(every instance shares one ledger; each operation is one Lua script). In Redis a period
is a hash ``{prefix}:budget:{key_id}:{period_start}`` created only if absent (so
instances that read the usage log at the same time agree on one value), expiring a day
after the period ends. Each answer's share of ``reserved`` is a lease its instance
renews while the answer runs: the share of a crashed instance's answer is given back
instead of holding the budget until the period ends. A ledger lost with Redis is
rebuilt from the usage log; answers in flight then are recorded when they end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import redis.asyncio as redis

from sluice.policy.limits import fail_closed

MICRO = 1_000_000
#: A period's ledger outlives the period by this long (late settlements still land).
_GRACE_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Period:
    """One key's budget over one period: the ledger's account."""

    key_id: str
    start: float
    end: float
    #: Budget in tokens, or None.
    tokens: int | None
    #: Budget in micro-units of currency, or None.
    cost: int | None


@dataclass(frozen=True, slots=True)
class Ask:
    """What a reservation adds: a fixed part (the prompt: ``base_tokens`` tokens costing
    ``base_cost``) and up to ``count`` completion tokens at ``unit_cost`` each (costs in
    micro-units). At least one completion token must fit, or nothing is reserved."""

    base_tokens: int
    base_cost: float
    unit_cost: float
    count: int


@dataclass(frozen=True, slots=True)
class Grant:
    """Completion tokens granted (0: refused) and what was reserved for them."""

    count: int
    tokens: int = 0
    cost: int = 0
    #: Why nothing was granted: the budget is spent, or held by answers in flight.
    refused: Literal["spent", "reserved"] | None = None


#: Tokens and micro-units a key spent in a period, from the usage log.
Loader = Callable[[], Awaitable[tuple[int, int]]]


class Ledger(Protocol):
    """Reservations are held by an id (one answer's) and settled by it; in a shared
    ledger they are leases, renewed while the answer runs."""

    async def reserve(self, period: Period, holder: str, ask: Ask, load: Loader) -> Grant:
        """Reserve atomically for ``holder`` (adding to what it holds); ``load`` reads
        ``spent`` if the period is new here."""
        ...

    async def settle(self, period: Period, holder: str, used: tuple[int, int]) -> None:
        """Add real usage (tokens, micro-units) and return what ``holder`` holds."""
        ...

    async def renew(self, held: Iterable[tuple[Period, str]]) -> None:
        """Extend the leases of reservations whose answers still run."""
        ...


def period_end(period: str, start: float) -> float:
    moment = dt.datetime.fromtimestamp(start, dt.UTC)
    if period == "day":
        return (moment + dt.timedelta(days=1)).timestamp()
    if moment.month == 12:
        return moment.replace(year=moment.year + 1, month=1).timestamp()
    return moment.replace(month=moment.month + 1).timestamp()


def fit(period: Period, ask: Ask, spent: tuple[int, int], reserved: tuple[int, int]) -> Grant:
    """The grant for ``ask`` given the ledger's state (the Lua script does the same)."""
    count = free = ask.count
    if period.tokens is not None:
        count = min(count, period.tokens - spent[0] - reserved[0] - ask.base_tokens)
        free = min(free, period.tokens - spent[0] - ask.base_tokens)
    if period.cost is not None:
        room = period.cost - spent[1] - reserved[1] - ask.base_cost
        unreserved = period.cost - spent[1] - ask.base_cost
        if ask.unit_cost > 0:
            count = min(count, math.floor(room / ask.unit_cost))
            free = min(free, math.floor(unreserved / ask.unit_cost))
        else:
            count = count if room >= 0 else 0
            free = free if unreserved >= 0 else 0
    if count < 1:
        return Grant(0, refused="spent" if free < 1 else "reserved")
    return Grant(count, ask.base_tokens + count, math.ceil(ask.base_cost + count * ask.unit_cost))


@dataclass
class _Entry:
    end: float
    spent: int
    spent_cost: int
    reserved: int = 0
    reserved_cost: int = 0
    #: What each holder has reserved: [tokens, micro-units].
    holds: dict[str, list[int]] = field(default_factory=dict)


class MemoryLedger:
    """One process's ledger (its reservations end with it: no leases)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, float], _Entry] = {}
        self._lock = asyncio.Lock()

    async def reserve(self, period: Period, holder: str, ask: Ask, load: Loader) -> Grant:
        name = (period.key_id, period.start)
        if name not in self._entries:
            spent = await load()
            async with self._lock:
                if name not in self._entries:  # the first to load wins, as in Redis
                    self._forget_ended()
                    self._entries[name] = _Entry(period.end, *spent)
        async with self._lock:
            entry = self._entries[name]
            grant = fit(
                period,
                ask,
                (entry.spent, entry.spent_cost),
                (entry.reserved, entry.reserved_cost),
            )
            if grant.count:
                entry.reserved += grant.tokens
                entry.reserved_cost += grant.cost
                hold = entry.holds.setdefault(holder, [0, 0])
                hold[0] += grant.tokens
                hold[1] += grant.cost
            return grant

    async def settle(self, period: Period, holder: str, used: tuple[int, int]) -> None:
        async with self._lock:
            entry = self._entries.get((period.key_id, period.start))
            if entry is None:
                return  # forgotten; the usage log has it
            tokens, cost = entry.holds.pop(holder, (0, 0))
            entry.reserved -= tokens
            entry.reserved_cost -= cost
            entry.spent += used[0]
            entry.spent_cost += used[1]

    async def renew(self, held: Iterable[tuple[Period, str]]) -> None:
        return None

    def _forget_ended(self) -> None:
        # Memory stays bounded: past periods go once nothing is reserved in them.
        now = time.time()
        for name, entry in list(self._entries.items()):
            if entry.end + _GRACE_SECONDS < now and not entry.holds:
                del self._entries[name]


# The server's clock, so instances with skewed clocks agree on which leases ran out.
_NOW = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Per period: a hash (KEYS[1]) with spent, cost, reserved, reserved_cost and each
# holder's share (t:<id>, c:<id>), and a sorted set (KEYS[2]) of holders scored by
# when their lease runs out. Expired holders' shares are given back first.
_EXPIRE = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, id in ipairs(expired) do
  local share = redis.call('HMGET', KEYS[1], 't:' .. id, 'c:' .. id)
  redis.call('HINCRBY', KEYS[1], 'reserved', 0 - (tonumber(share[1]) or 0))
  redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - (tonumber(share[2]) or 0))
  redis.call('HDEL', KEYS[1], 't:' .. id, 'c:' .. id)
end
if #expired > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now) end
"""
)

# ARGV: token budget, cost budget (-1: none), base tokens, base cost, unit cost, count,
# holder, lease (ms). Returns {granted, tokens, cost}; granted -2: the period is not
# loaded yet, -1: spent, 0: held by reservations. Mirrors ``fit``.
_RESERVE = (
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {-2, 0, 0} end\n"
    + _EXPIRE
    + """
local s = redis.call('HMGET', KEYS[1], 'spent', 'cost', 'reserved', 'reserved_cost')
local spent, cost = tonumber(s[1]) or 0, tonumber(s[2]) or 0
local reserved, reserved_cost = tonumber(s[3]) or 0, tonumber(s[4]) or 0
local budget, budget_cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local base, base_cost, unit = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local count = tonumber(ARGV[6])
local free = count
if budget >= 0 then
  count = math.min(count, budget - spent - reserved - base)
  free = math.min(free, budget - spent - base)
end
if budget_cost >= 0 then
  local room = budget_cost - cost - reserved_cost - base_cost
  local unreserved = budget_cost - cost - base_cost
  if unit > 0 then
    count = math.min(count, math.floor(room / unit))
    free = math.min(free, math.floor(unreserved / unit))
  else
    if room < 0 then count = 0 end
    if unreserved < 0 then free = 0 end
  end
end
if count < 1 then
  if free < 1 then return {-1, 0, 0} end
  return {0, 0, 0}
end
local tokens = base + count
local micro = math.ceil(base_cost + count * unit)
redis.call('HINCRBY', KEYS[1], 'reserved', tokens)
redis.call('HINCRBY', KEYS[1], 'reserved_cost', micro)
redis.call('HINCRBY', KEYS[1], 't:' .. ARGV[7], tokens)
redis.call('HINCRBY', KEYS[1], 'c:' .. ARGV[7], micro)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[8]), ARGV[7])
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then redis.call('EXPIRE', KEYS[2], ttl) end
return {count, tokens, micro}
"""
)

# ARGV: spent tokens, spent micro-units, expiry (unix s). Created only if absent: the
# first instance to load the usage log wins.
_LOAD = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'cost', ARGV[2], 'reserved', 0,
           'reserved_cost', 0)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 1
"""

# ARGV: used tokens, used micro-units, holder. A ledger that is gone is left alone: the
# usage log has it.
_SETTLE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local share = redis.call('HMGET', KEYS[1], 't:' .. ARGV[3], 'c:' .. ARGV[3])
redis.call('HINCRBY', KEYS[1], 'reserved', 0 - (tonumber(share[1]) or 0))
redis.call('HINCRBY', KEYS[1], 'reserved_cost', 0 - (tonumber(share[2]) or 0))
redis.call('HDEL', KEYS[1], 't:' .. ARGV[3], 'c:' .. ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'spent', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'cost', ARGV[2])
return 1
"""

# ARGV: lease (ms), holders. Only leases not yet run out are renewed.
_RENEW = (
    _NOW
    + """
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if score and tonumber(score) > now then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[1]), ARGV[i])
  end
end
return 1
"""
)


class RedisLedger:
    """One ledger for every instance sharing the Redis. A reservation is a lease: one
    its instance stops renewing (crashed) is given back by the next reservation."""

    def __init__(self, client: redis.Redis, prefix: str, lease_seconds: float = 30.0) -> None:
        self._client = client
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        self._reserve = client.register_script(_RESERVE)
        self._load = client.register_script(_LOAD)
        self._settle = client.register_script(_SETTLE)
        self._renew = client.register_script(_RENEW)

    def _names(self, period: Period) -> list[str]:
        name = f"{self._prefix}:budget:{period.key_id}:{int(period.start)}"
        return [name, name + ":leases"]

    async def reserve(self, period: Period, holder: str, ask: Ask, load: Loader) -> Grant:
        names = self._names(period)
        args: list[int | str] = [
            -1 if period.tokens is None else period.tokens,
            -1 if period.cost is None else period.cost,
            ask.base_tokens,
            repr(ask.base_cost),
            repr(ask.unit_cost),
            ask.count,
            holder,
            self._lease_ms,
        ]
        for _ in range(2):
            count, tokens, cost = await self._reserve(keys=names, args=args)
            if count != -2:
                break
            spent, spent_cost = await load()
            expiry = math.ceil(period.end) + _GRACE_SECONDS
            await self._load(keys=names[:1], args=[spent, spent_cost, expiry])
        if count > 0:
            return Grant(int(count), int(tokens), int(cost))
        return Grant(0, refused="spent" if count == -1 else "reserved")

    async def settle(self, period: Period, holder: str, used: tuple[int, int]) -> None:
        await self._settle(keys=self._names(period), args=[used[0], used[1], holder])

    async def renew(self, held: Iterable[tuple[Period, str]]) -> None:
        by_period: dict[Period, list[str]] = {}
        for period, holder in held:
            by_period.setdefault(period, []).append(holder)
        if not by_period:
            return
        pipe = self._client.pipeline(transaction=False)
        for period, holders in by_period.items():
            await self._renew(
                keys=self._names(period), args=[self._lease_ms, *holders], client=pipe
            )
        await pipe.execute()


class Reservation:
    """One answer's hold on its key's budget, and its allowance: ``remaining``
    completion tokens, and ``extend`` for another block when they run out (the
    Generation's ``Allowance``)."""

    def __init__(
        self, ledger: Ledger, period: Period, unit_cost: float, block: int, load: Loader
    ) -> None:
        self._ledger = ledger
        self.period = period
        self._unit_cost = unit_cost
        self._block = block
        self._load = load
        #: The ledger's name for this answer's share.
        self.holder = secrets.token_hex(8)
        #: Completion tokens the answer may still produce.
        self.remaining = 0

    async def take(self, ask: Ask) -> Grant:
        grant = await self._ledger.reserve(self.period, self.holder, ask, self._load)
        self.remaining += grant.count
        return grant

    async def extend(self) -> bool:
        """Another block of completion tokens, if the budget has one free."""
        async with fail_closed():
            grant = await self.take(Ask(0, 0.0, self._unit_cost, self._block))
        return grant.count > 0

    async def settle(self, tokens: int, cost: int) -> None:
        """Record real usage and give the share back. The allowance goes first: a later
        extension reserves anew (and is settled by the next settle)."""
        self.remaining = 0
        await self._ledger.settle(self.period, self.holder, (tokens, cost))
