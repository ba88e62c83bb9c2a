"""The simulated model: realistic streamed answers offline, with no key, and fault
injection for testing what sits in front of a model."""

from sluice.providers.sim.options import SimOptions
from sluice.providers.sim.provider import SimProvider, create

__all__ = ["SimOptions", "SimProvider", "create"]
