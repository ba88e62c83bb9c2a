"""The upstreams' part of ``GET /health``: each model's upstream, "ok" or what is wrong,
and for each one that is not, the hint that names what to check (its ``base_url``, its
key's variable), from the one table of recommendations (``sluice.errors``)."""

from __future__ import annotations

import asyncio

from sluice.engine.engine import Engine
from sluice.errors import SluiceError, recommendation
from sluice.providers.upstream_errors import upstream_of


async def upstream_health(engine: Engine) -> tuple[dict[str, str], dict[str, str]]:
    """(status per model, hint per model that is not "ok"). Spends no tokens: each
    provider's ``check``, all at once."""
    configs = engine.models()
    results = await asyncio.gather(
        *(engine.provider(config.name).check() for config in configs), return_exceptions=True
    )
    statuses: dict[str, str] = {}
    hints: dict[str, str] = {}
    for config, result in zip(configs, results, strict=True):
        if isinstance(result, SluiceError):
            statuses[config.name] = result.message
            hint = recommendation(result, upstream_of(config))
            if hint is not None:
                hints[config.name] = hint
        elif isinstance(result, BaseException):
            statuses[config.name] = f"check failed: {type(result).__name__}"
        else:
            statuses[config.name] = "ok"
    return statuses, hints
