"""Admission and metering of one answer: the key may use the model, it is within its
rate limits, and its budget has room; afterwards its real usage is recorded and the
limits are settled.

Budgets are tokens (and cost, where the model has a price) per key per day or month.
Admission reserves in the budget ledger (``policy.budgets``) the prompt estimate plus
``max_tokens``, or plus a block of ``BLOCK`` tokens (what is left, if less); the
completion part is the answer's allowance. An answer that uses its allowance up asks
for another block; only if none is free is it ended in-band with
``insufficient_quota``. When it ends, the real usage is recorded and the reservation
returned.

Every admitted answer holds a ticket until it is settled: its stream slot and its
reservation are given back on every path. A ticket whose answer was never started
(the caller failed between ``admit`` and ``meter``), or whose answer ended without its
metering callback running, is found by a sweeper and settled; the sweeper also renews
the Redis leases of the slots of answers still running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from sluice.errors import BudgetExceeded, PermissionDenied, RateLimited
from sluice.events import Usage
from sluice.policy.access import Principal
from sluice.policy.budgets import (
    MICRO,
    Ask,
    Ledger,
    MemoryLedger,
    Period,
    Reservation,
    period_end,
)
from sluice.policy.limits import Admission, RateLimits, fail_closed
from sluice.settings import ModelConfig
from sluice.store.batches import RowBatches
from sluice.store.keys import ApiKey, KeyStore, period_start, usage_row
from sluice.tokens import estimate_prompt_tokens

logger = logging.getLogger("sluice.policy")

#: Completion tokens reserved at a time when the request sets no ``max_tokens``.
BLOCK = 256
#: Seconds an admitted answer may take to be started and metered before its ticket is
#: taken back.
UNMETERED_SECONDS = 10.0
#: How often the sweeper looks at open tickets.
SWEEP_SECONDS = 2.0

_PERIOD_ADJECTIVE = {"day": "daily", "month": "monthly"}


class Metered(Protocol):
    """What metering needs of an answer (the engine's Generation is one)."""

    id: str
    model: str
    served_by: str | None
    usage: Usage | None

    @property
    def done(self) -> bool: ...


class Ticket:
    """One admitted answer: what it may spend and what to give back when it ends."""

    def __init__(self, admission: Admission | None, allowance: Reservation | None) -> None:
        self.admission = admission
        #: The answer's budget reservation and allowance (the Generation's ``allowance``).
        self.allowance = allowance
        self.admitted_at = time.monotonic()
        self.principal: Principal | None = None
        self.generation: Metered | None = None
        #: Its settlement has started.
        self.closing = False
        #: Its answer costs upstream tokens (not a cached or coalesced one).
        self.spends = True

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.admission.headers if self.admission else []


class Quota:
    def __init__(
        self,
        keys: KeyStore,
        limits: RateLimits,
        models: dict[str, ModelConfig],
        *,
        ledger: Ledger | None = None,
        block: int = BLOCK,
        unmetered_seconds: float = UNMETERED_SECONDS,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self._keys = keys
        self._limits = limits
        self._models = models
        self._ledger: Ledger = ledger or MemoryLedger()
        self._block = block
        self._unmetered_seconds = unmetered_seconds
        self._sweep_seconds = sweep_seconds
        longest = max(
            (m.timeouts.total + m.retry.max_elapsed for m in models.values()), default=1800.0
        )
        # No lease is renewed past twice the longest an answer can take: one still
        # "running" then is stuck, and its slot may expire.
        self._renew_for = 2 * longest
        self._tasks: set[asyncio.Task[None]] = set()
        self._open: set[Ticket] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._renewed = time.monotonic()
        #: Usage records, written in batches off the request path (budgets count from
        #: the ledger, which is settled at once; the table is the durable record).
        self.usage = RowBatches(keys.record_usage, name="usage records", limit=200_000)

    async def admit(
        self,
        principal: Principal,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        *,
        spends: bool = True,
    ) -> Ticket:
        """Admit one answer. One that ``spends`` no upstream tokens (a cached answer, or
        one following an identical answer in flight) counts as a request and a stream,
        but is not charged tokens and reserves no budget."""
        key = principal.key
        if key is None:
            return Ticket(None, None)
        if not key.allows(model):
            raise PermissionDenied(f"This API key may not use the model `{model}`.", param="model")
        prompt = estimate_prompt_tokens(messages) if spends else 0
        async with fail_closed():
            admission = await self._limits.admit(key, prompt + (max_tokens or 0) if spends else 0)
        ticket = Ticket(admission, None)
        ticket.spends = spends
        self._hold(ticket)
        if not spends:
            return ticket
        try:
            ticket.allowance = await self._reserve(key, model, prompt, max_tokens)
        except BaseException:
            # Refused (or cancelled) after the slot was taken: give it back before the
            # refusal goes out, so the client's retry finds it free.
            self._open.discard(ticket)
            await asyncio.shield(self._spawn(self._lapse(ticket)))
            raise
        return ticket

    async def _reserve(
        self, key: ApiKey, model: str, prompt: int, max_tokens: int | None
    ) -> Reservation | None:
        config = self._models.get(model)
        price = config.price if config else None
        cost = key.budget_cost if price is not None else None
        if not key.budget_period or (key.budget_tokens is None and cost is None):
            return None
        start = period_start(key.budget_period)
        period = Period(
            key.id,
            start,
            period_end(key.budget_period, start),
            key.budget_tokens,
            None if cost is None else round(cost * MICRO),
        )
        # A price per million tokens is a price in micro-units per token.
        unit_cost = price.output if price else 0.0

        async def spent() -> tuple[int, int]:
            tokens, money = await self._keys.spent(key.id, start)
            return tokens, round(money * MICRO)

        reservation = Reservation(self._ledger, period, unit_cost, self._block, spent)
        base_cost = prompt * price.input if price else 0.0
        async with fail_closed():
            grant = await reservation.take(
                Ask(prompt, base_cost, unit_cost, max_tokens or self._block)
            )
        every = _PERIOD_ADJECTIVE.get(key.budget_period, key.budget_period)
        if grant.refused == "spent":
            raise BudgetExceeded(
                f"This API key's {every} budget is spent; it renews at the start of the "
                f"next {key.budget_period}.",
            )
        if grant.refused == "reserved":
            raise RateLimited(
                f"This API key's {every} budget is held by answers in progress; retry when "
                "they finish.",
                code="budget_reserved",
                retry_after=1,
            )
        return reservation

    def finisher(self, ticket: Ticket) -> Callable[[Any], None]:
        """The hook ``Engine.start`` runs once when the answer ends: record its real
        usage and settle its ticket."""
        return lambda _: self._close(ticket)

    def meter(self, generation: Metered, principal: Principal, ticket: Ticket) -> None:
        """Bind the ticket to its running answer: its leases are renewed while it runs,
        and its usage is recorded for ``principal``."""
        ticket.principal = principal
        ticket.generation = generation

    def release(self, ticket: Ticket) -> None:
        """An admitted answer whose start failed (the gateway at capacity, the store
        down): give back its slot and reservation now, not when the sweeper notices."""
        if not ticket.closing and ticket.generation is None:
            ticket.closing = True
            self._open.discard(ticket)
            self._spawn(self._lapse(ticket))

    def _hold(self, ticket: Ticket) -> None:
        self._open.add(ticket)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _close(self, ticket: Ticket) -> None:
        if not ticket.closing:
            ticket.closing = True
            self._spawn(self._finish(ticket))

    async def _release_slot(self, ticket: Ticket) -> None:
        if ticket.admission is not None:
            try:
                await self._limits.release(ticket.admission)
            except Exception:  # its lease runs out instead
                logger.warning("releasing a stream slot failed", exc_info=True)

    async def _lapse(self, ticket: Ticket) -> None:
        """Give back what an unstarted answer holds. Metered later after all, it settles
        normally; its allowance is gone, so it must reserve anew for every token."""
        await self._release_slot(ticket)
        if ticket.allowance is not None:
            try:
                await ticket.allowance.settle(0, 0)
            except Exception:
                logger.warning("returning a budget reservation failed", exc_info=True)

    async def _finish(self, ticket: Ticket) -> None:
        try:
            await self._release_slot(ticket)  # first: it matters most, and costs least
            if not ticket.spends:
                return
            generation = ticket.generation
            usage = generation.usage if generation else None
            prompt = usage.prompt_tokens if usage else 0
            completion = usage.completion_tokens if usage else 0
            model = (generation.served_by or generation.model) if generation else ""
            config = self._models.get(model)
            cost = config.price.cost(prompt, completion) if config and config.price else None
            principal = ticket.principal
            if usage is not None and generation is not None and principal is not None:
                self.usage.add(
                    usage_row(
                        key_id=principal.key.id if principal.key else None,
                        owner=principal.owner,
                        model=model,
                        prompt_tokens=prompt,
                        completion_tokens=completion,
                        cost=cost,
                        estimated=bool(usage.details.get("estimated")),
                        stream_id=generation.id,
                    )
                )
            if ticket.allowance is not None:
                try:
                    # Usage in and reservation out in one step: no moment when neither
                    # counts.
                    await ticket.allowance.settle(prompt + completion, round((cost or 0) * MICRO))
                except Exception:
                    logger.warning("settling a budget failed", exc_info=True)
            if ticket.admission is not None:
                try:
                    await self._limits.charge(ticket.admission, prompt + completion)
                except Exception:
                    logger.warning("charging tokens per minute failed", exc_info=True)
        finally:
            self._open.discard(ticket)

    async def _sweep(self) -> None:
        renew_every = self._limits.LEASE_SECONDS / 3
        while self._open:
            await asyncio.sleep(self._sweep_seconds)
            now = time.monotonic()
            running: list[Ticket] = []
            for ticket in list(self._open):
                generation = ticket.generation
                if ticket.closing:
                    continue
                if generation is None:
                    if now - ticket.admitted_at > self._unmetered_seconds:
                        self._open.discard(ticket)
                        self._spawn(self._lapse(ticket))
                    else:
                        running.append(ticket)
                elif generation.done:
                    self._close(ticket)  # it ended, but its metering callback never ran
                elif now - ticket.admitted_at < self._renew_for:
                    running.append(ticket)
            if running and now - self._renewed >= renew_every:
                self._renewed = now
                await self._renew(running)
        self._sweeper = None

    async def _renew(self, running: list[Ticket]) -> None:
        """Extend the leases (slots, budget shares) of answers still running."""
        try:
            await self._limits.renew(t.admission for t in running if t.admission is not None)
            await self._ledger.renew(
                (t.allowance.period, t.allowance.holder) for t in running if t.allowance is not None
            )
        except Exception as exc:  # leases run out unless renewed later
            logger.warning("renewing leases failed (%s)", type(exc).__name__)

    async def settle(self) -> None:
        """Wait for pending settlements (shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        await self.usage.aclose()
