"""sluice: a streaming LLM chat gateway.

The embedding API lives here: ``Sluice`` (asyncio) and ``SyncSluice`` stream answers from
the in-process engine; ``sluice.events`` holds the values a stream is made of, and
``sluice.wire.sse`` the public Server-Sent Events codec.
"""

from typing import TYPE_CHECKING, Any

from sluice.errors import SluiceError
from sluice.events import (
    Event,
    Finish,
    ReasoningDelta,
    RoleStart,
    StreamError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

if TYPE_CHECKING:
    from sluice.embed import Answer, Sluice, SyncSluice
    from sluice.settings import ModelConfig, Settings

# The engine (aiohttp, pydantic models, providers) loads on first use, not on import:
# every `sluice` command imports this package, and most never need it.
_LAZY = {
    "Answer": "sluice.embed",
    "Sluice": "sluice.embed",
    "SyncSluice": "sluice.embed",
    "ModelConfig": "sluice.settings",
    "Settings": "sluice.settings",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'sluice' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__version__ = "0.1.0"

__all__ = [
    "Answer",
    "Event",
    "Finish",
    "ModelConfig",
    "ReasoningDelta",
    "RoleStart",
    "Settings",
    "Sluice",
    "SluiceError",
    "StreamError",
    "SyncSluice",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "__version__",
]
