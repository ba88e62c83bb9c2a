"""A small client for the chat API in tests: POST /chat and read its SSE events."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sluice.wire.sse import ServerSentEvent, SSEDecoder


@dataclass
class ChatStream:
    status: int
    events: list[ServerSentEvent] = field(default_factory=list)
    error_body: dict[str, Any] | None = None

    def frames(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(e.data) for e in self.events]
        return [f for f in out if kind is None or f["type"] == kind]

    @property
    def start(self) -> dict[str, Any]:
        return self.frames("start")[0]

    @property
    def text(self) -> str:
        return "".join(f["content"] for f in self.frames("content"))

    @property
    def done(self) -> dict[str, Any]:
        return self.frames("done")[0]


async def chat(url: str, body: dict[str, Any], *, stop_after: int | None = None) -> ChatStream:
    """One /chat turn; ``stop_after`` closes the connection after that many events."""
    async with aiohttp.ClientSession() as session:
        response = await session.post(url + "/chat", json=body)
        stream = ChatStream(response.status)
        if response.status != 200:
            stream.error_body = await response.json()
            response.close()
            return stream
        decoder = SSEDecoder()
        async for piece in response.content.iter_any():
            stream.events += decoder.feed(piece)
            if stop_after is not None and len(stream.events) >= stop_after:
                response.close()
                return stream
        response.close()
        return stream


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()
