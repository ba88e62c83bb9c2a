"""The ``sim`` provider: the simulated model, in-process (the embedded default)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.errors import ConfigError, RequestError, UpstreamError, UpstreamProtocolError
from sluice.events import Event
from sluice.providers.base import Provider, ProviderContext
from sluice.providers.sim.options import SimLimits, SimOptions
from sluice.providers.sim.play import Fault, SimStats, play
from sluice.providers.sim.response_format import structured_output
from sluice.providers.sim.script import build_script, draw_seed
from sluice.providers.upstream_errors import error_for_status
from sluice.settings import ModelConfig
from sluice.wire.openai_request import ChatRequest


class SimProvider:
    def __init__(
        self,
        options: SimOptions,
        stats: SimStats | None = None,
        limits: SimLimits | None = None,
    ) -> None:
        self.options = options
        self.stats = stats or SimStats()
        self.limits = limits or SimLimits()

    def validate(self, request: ChatRequest) -> None:
        """A bad ``sim`` object or ``response_format`` is the client's mistake: refused
        before the answer starts (nothing stored, no quota spent), not failed in-band."""
        self.options.merged(request.body.get("sim"), limits=self.limits)
        structured_output(request.body)

    async def stream(self, request: ChatRequest) -> AsyncIterator[list[Event]]:
        limits = self.limits
        options = self.options.merged(request.body.get("sim"), limits=limits)
        stats = self.stats
        attempt = stats.attempt(options.key, request.messages, request.body.get("temperature"))
        key = stats.key(options.key)
        if options.fail_status and (options.fail_times is None or attempt <= options.fail_times):
            key.failed += 1
            raise error_for_status(options.fail_status, "simulated failure", options.retry_after)
        seed = draw_seed(request.body)
        script = build_script(request.body, options, max_length=limits.max_length, seed=seed)
        completed = False
        try:
            async for step in play(script, options, request.body.get("seed", seed)):
                if step is Fault.DROP:
                    raise UpstreamError("simulated connection drop")
                if step is Fault.MALFORMED:
                    raise UpstreamProtocolError("upstream sent a chunk that is not valid JSON")
                yield step
            completed = True
        finally:
            if completed:
                key.completed += 1
            else:
                key.disconnected += 1

    async def check(self) -> None:
        """Always reachable: it lives in this process."""

    async def aclose(self) -> None:
        """Nothing to release."""


def create(model: ModelConfig, context: ProviderContext) -> Provider:
    try:
        options = SimOptions.parse(model.options, where="options")
    except RequestError as exc:
        raise ConfigError(f"model {model.name!r}: {exc.message}") from None
    settings = context.settings
    limits = SimLimits() if settings is None else SimLimits(max_length=settings.max_sim_length)
    return SimProvider(options, limits=limits)
