"""Giving memory back after a burst of streams.

CPython frees objects into its own arenas and glibc keeps freed heap pages for reuse, so
after a burst of thousands of streams the process keeps its peak size even though
nothing is alive any more. When the gateway goes quiet (no stream running), it collects
garbage and asks glibc to return free pages to the system (``malloc_trim``). Off the hot
path: it runs at most once per quiet period, a second after the last stream ends.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
from collections.abc import Callable

_QUIET_DELAY = 1.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


class QuietTrim:
    def __init__(self, is_quiet: Callable[[], bool]) -> None:
        self._is_quiet = is_quiet
        self._handle: asyncio.TimerHandle | None = None
        self._trim = _load_trim()
        self.trims = 0

    def maybe_quiet(self) -> None:
        """Call when a stream ends; trims a second later if nothing runs by then."""
        if self._handle is None and self._is_quiet():
            self._handle = asyncio.get_running_loop().call_later(_QUIET_DELAY, self._run)

    def _run(self) -> None:
        self._handle = None
        if not self._is_quiet():
            return
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self.trims += 1

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
