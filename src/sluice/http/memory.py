"""The served process's memory: GC and allocator tuning, for ``sluice serve`` only.

Both change the whole process, so they belong to the server (the gateway's ASGI
lifespan, when ``http/server.py`` serves it), never to the engine a program embeds:

- **``gc.freeze()`` once start-up is done.** The import graph (FastAPI, pydantic,
  aiohttp …) and everything built at start-up live for the whole run; frozen, full
  collections stop rescanning them. Measured at 200 streams: 20+ us of CPU per relayed
  chunk without it (docs/BENCHMARKS.md, "What moved the numbers").
- **Memory given back when the gateway goes quiet.** CPython frees objects into its own
  arenas and glibc keeps freed heap pages for reuse, so after a burst of thousands of
  streams the process keeps its peak size although nothing is alive any more. Once no
  stream is running or retained for replay, the gateway collects garbage and asks glibc
  to return free pages (``malloc_trim``): at most once per quiet period, off the hot path
  (the 500-stream load test checks that RSS comes back to its baseline).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable
from typing import Protocol

#: How often the watcher looks; the trim comes after two quiet looks running, so between
#: one and two of these after the last stream is forgotten.
TICK_SECONDS = 0.5

Trim = Callable[[int], int]


class Streams(Protocol):
    @property
    def retained(self) -> int:
        """Generations held in memory, running or replayable."""
        ...


def load_trim() -> Trim | None:
    """glibc's ``malloc_trim``, or None where there is none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


class ProcessMemory:
    """``start`` once the gateway has started, ``stop`` when it stops."""

    def __init__(self, *, tick: float = TICK_SECONDS, trim: Trim | None = None) -> None:
        self._tick = tick
        self._trim = trim if trim is not None else load_trim()
        self._watcher: asyncio.Task[None] | None = None
        #: Quiet-time collections so far.
        self.trims = 0

    def start(self, streams: Streams) -> None:
        gc.collect()
        gc.freeze()
        self._watcher = asyncio.get_running_loop().create_task(self._watch(streams))

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    async def _watch(self, streams: Streams) -> None:
        # One look every tick, not a hook per stream: the engine stays free of it.
        held = False
        quiet = 0
        while True:
            await asyncio.sleep(self._tick)
            if streams.retained:
                held, quiet = True, 0
                continue
            quiet += 1
            if held and quiet >= 2:
                held = False
                self._give_back()

    def _give_back(self) -> None:
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self.trims += 1
