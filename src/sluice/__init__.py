"""sluice: a streaming LLM chat gateway.

The embedding API lives here: ``Sluice`` (asyncio) and ``SyncSluice`` stream answers from
the in-process engine; ``sluice.events`` holds the values a stream is made of, and
``sluice.wire.sse`` the public Server-Sent Events codec.
"""

from sluice.embed import Answer, Sluice, SyncSluice
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
from sluice.settings import ModelConfig, Settings

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
