"""The provider seam: one narrow method that streams events for a request.

Retries, fallbacks, caching and metrics wrap this seam in the engine; they never live
inside a provider. Providers register under the ``sluice.providers`` entry-point group,
the built-in ones exactly as a third-party one would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from sluice.events import Event
from sluice.providers.http_client import HttpClient
from sluice.settings import ModelConfig, Settings
from sluice.wire.openai_request import ChatRequest


class Provider(Protocol):
    def stream(self, request: ChatRequest) -> AsyncIterator[list[Event]]:
        """Events for ``request``, in batches: each item holds the events that arrived
        together (one upstream read), so the edge writes them with one send. Raises a
        ``sluice.errors.UpstreamError`` on failure. Closing the iterator (or cancelling
        its task) must release the upstream call at once."""
        ...

    async def check(self) -> None:
        """Raise an UpstreamError unless the upstream looks reachable; spends no tokens."""
        ...

    async def aclose(self) -> None: ...


#: Optional on a provider: ``validate(request)`` raises a RequestError for what the
#: provider will certainly refuse, so the gateway answers 400 before anything starts.
VALIDATE = "validate"


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What the gateway shares with every provider it builds."""

    http: HttpClient
    #: The gateway's settings, for the bounds a provider applies to what a request asks
    #: of it (the simulator's ``max_sim_length``). None: a provider's own defaults.
    settings: Settings | None = None


ProviderFactory = Callable[[ModelConfig, ProviderContext], Provider]
