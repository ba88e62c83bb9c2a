"""Embedding sluice in a program: the engine in-process, no server, no HTTP.

``Sluice`` is the asyncio API (an async iterator of events per answer); ``SyncSluice``
wraps it for ordinary code by running the engine's event loop on a background thread.
The terminal chat uses these, and so can any script::

    with SyncSluice() as sluice:
        for event in sluice.stream("Explain SSE in one paragraph", model="sim"):
            if isinstance(event, TextDelta):
                print(event.text, end="", flush=True)

Built through the composition root (``sluice.runtime``), like the server; embedding
changes nothing process-wide (no GC or allocator tuning: that is the server's). A failed
answer raises the exception it failed with, class and fields (``UpstreamTimeout``,
``UpstreamRateLimited`` with its ``retry_after``, …), all ``SluiceError``s.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from sluice.events import Event
from sluice.runtime import Runtime
from sluice.settings import Settings
from sluice.wire.errors import error_from_stream
from sluice.wire.openai_chunks import Completion
from sluice.wire.openai_request import ChatRequest, chat_request_from_body

Messages = str | list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    events: list[Event]


def build_request(messages: Messages, model: str, params: dict[str, Any]) -> ChatRequest:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return chat_request_from_body({**params, "model": model, "messages": messages})


def answer_from(events: list[Event]) -> Answer:
    completion = Completion()
    for event in events:
        completion.add(event)
    if completion.error is not None:
        raise error_from_stream(completion.error)
    usage = completion.usage
    return Answer(
        completion.text(),
        completion.finish_reason(),
        usage.prompt_tokens if usage else None,
        usage.completion_tokens if usage else None,
        events,
    )


class Sluice:
    """The engine in-process, for asyncio programs."""

    def __init__(self, settings: Settings | None = None, *, runtime: Runtime | None = None) -> None:
        """``settings`` (else loaded from the environment and defaults), or a ``runtime``
        already built from them, which ``aclose`` then closes."""
        self.runtime = runtime or Runtime.build(settings or Settings.load())
        self.engine = self.runtime.engine

    async def stream(
        self, messages: Messages, *, model: str = "sim", **params: Any
    ) -> AsyncGenerator[Event, None]:
        """Events of one answer. A failure arrives as a final StreamError event;
        leaving the loop early cancels the upstream call."""
        request = build_request(messages, model, params)
        async for event in self.engine.stream(request):
            yield event

    async def complete(self, messages: Messages, *, model: str = "sim", **params: Any) -> Answer:
        """The whole answer; raises the SluiceError it failed with."""
        return answer_from([event async for event in self.stream(messages, model=model, **params)])

    async def aclose(self) -> None:
        await self.runtime.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncSluice:
    """The same for synchronous code: the engine runs on a private event-loop thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="sluice")
        self._thread.start()
        self._sluice: Sluice = self._call(self._make(settings))

    async def _make(self, settings: Settings | None) -> Sluice:
        return Sluice(settings)

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stream(self, messages: Messages, *, model: str = "sim", **params: Any) -> Iterator[Event]:
        agen = self._sluice.stream(messages, model=model, **params)
        try:
            while True:
                future: Future[Event] = asyncio.run_coroutine_threadsafe(
                    agen.__anext__(), self._loop
                )
                try:
                    yield future.result()
                except StopAsyncIteration:
                    return
        finally:
            # Leaving early (break, an exception, Ctrl-C) cancels the upstream call.
            self._call(agen.aclose())

    def complete(self, messages: Messages, *, model: str = "sim", **params: Any) -> Answer:
        return answer_from(list(self.stream(messages, model=model, **params)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._sluice.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
