"""Provider registry: names -> factories, found through the ``sluice.providers``
entry-point group (built-ins included)."""

from __future__ import annotations

from importlib.metadata import entry_points

from sluice.errors import ConfigError
from sluice.providers.base import Provider, ProviderContext, ProviderFactory
from sluice.settings import ModelConfig

GROUP = "sluice.providers"


def available() -> dict[str, ProviderFactory]:
    factories: dict[str, ProviderFactory] = {}
    for entry in entry_points(group=GROUP):
        factories[entry.name] = entry.load()
    return factories


def build(
    model: ModelConfig, context: ProviderContext, factories: dict[str, ProviderFactory]
) -> Provider:
    factory = factories.get(model.provider)
    if factory is None:
        known = ", ".join(sorted(factories)) or "none"
        raise ConfigError(
            f"model {model.name!r}: unknown provider {model.provider!r} (registered: {known})"
        )
    return factory(model, context)


__all__ = ["GROUP", "Provider", "ProviderContext", "ProviderFactory", "available", "build"]
