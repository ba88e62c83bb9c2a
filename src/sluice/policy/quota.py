"""Admission and metering of one answer: the key may use the model, it is within its
rate limits, and its budget has room; afterwards its real usage is recorded and the
limits are settled.

Budgets are tokens (and cost, where the model has a price) per key per day or month,
summed from the usage log. What is left when an answer starts becomes the answer's
token allowance: a stream that would exceed it is ended in-band with
``insufficient_quota``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sluice.errors import BudgetExceeded, PermissionDenied
from sluice.events import Usage
from sluice.policy.access import Principal
from sluice.policy.limits import Admission, RateLimits
from sluice.settings import ModelConfig
from sluice.store.keys import ApiKey, KeyStore, period_start
from sluice.tokens import estimate_prompt_tokens

logger = logging.getLogger("sluice.policy")


class Metered(Protocol):
    """What metering needs of an answer (the engine's Generation is one)."""

    id: str
    model: str
    served_by: str | None
    usage: Usage | None
    on_finish: list[Callable[[Any], None]]


@dataclass
class Ticket:
    """One admitted answer: what it may spend and what to send back."""

    admission: Admission | None
    allowance: int | None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return self.admission.headers if self.admission else []


class Quota:
    def __init__(self, keys: KeyStore, limits: RateLimits, models: dict[str, ModelConfig]):
        self._keys = keys
        self._limits = limits
        self._models = models
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit(
        self,
        principal: Principal,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
    ) -> Ticket:
        key = principal.key
        if key is None:
            return Ticket(None, None)
        if not key.allows(model):
            raise PermissionDenied(f"This API key may not use the model `{model}`.", param="model")
        prompt = estimate_prompt_tokens(messages)
        allowance = await self._allowance(key, model, prompt)
        admission = await self._limits.admit(key, prompt + (max_tokens or 0))
        return Ticket(admission, allowance)

    async def _allowance(self, key: ApiKey, model: str, prompt: int) -> int | None:
        if not key.budget_period or (key.budget_tokens is None and key.budget_cost is None):
            return None
        spent_tokens, spent_cost = await self._keys.spent(key.id, period_start(key.budget_period))
        left: int | None = None
        if key.budget_tokens is not None:
            left = key.budget_tokens - spent_tokens - prompt
        price = self._models[model].price if model in self._models else None
        if key.budget_cost is not None and price is not None and price.output > 0:
            money = key.budget_cost - spent_cost - prompt * price.input / 1_000_000
            by_cost = int(money * 1_000_000 / price.output)
            left = by_cost if left is None else min(left, by_cost)
        if left is not None and left <= 0:
            raise BudgetExceeded(
                f"This API key's {key.budget_period}ly budget is spent; it renews at the "
                f"start of the next {key.budget_period}.",
            )
        return left

    def meter(self, generation: Metered, principal: Principal, ticket: Ticket) -> None:
        """Record the answer's real usage and settle its limits when it ends."""
        generation.on_finish.append(lambda done: self._spawn(self._finish(done, principal, ticket)))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, generation: Metered, principal: Principal, ticket: Ticket) -> None:
        usage = generation.usage
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        model = generation.served_by or generation.model
        config = self._models.get(model)
        cost = config.price.cost(prompt, completion) if config and config.price else None
        try:
            if usage is not None:
                await self._keys.record_usage(
                    key_id=principal.key.id if principal.key else None,
                    model=model,
                    prompt_tokens=prompt,
                    completion_tokens=completion,
                    cost=cost,
                    estimated=bool(usage.details.get("estimated")),
                    stream_id=generation.id,
                )
            if ticket.admission is not None:
                await self._limits.settle(ticket.admission, prompt + completion)
        except Exception:
            logger.warning("recording usage failed", exc_info=True)

    async def settle(self) -> None:
        """Wait for pending usage records (shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
