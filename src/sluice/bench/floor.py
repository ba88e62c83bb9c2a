"""The floor: the least a Python relay can do (plain ASGI on uvicorn, aiohttp upstream,
bytes copied through unparsed). ``sluice bench`` runs it beside the gateway so every
CPU-per-chunk figure comes with what this machine charges for the relay itself.

Run as ``python -m sluice.bench.floor UPSTREAM_URL PORT``.
"""

from __future__ import annotations

import gc
import sys

import aiohttp
import uvicorn

from sluice.http.asgi import Receive, Scope, Send


class FloorRelay:
    def __init__(self, upstream: str) -> None:
        self._url = upstream.rstrip("/") + "/v1/chat/completions"
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    gc.collect()
                    gc.freeze()
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if self._session is not None:
                        await self._session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"].startswith("/health"):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        headers = {"content-type": "application/json"}
        async with self._session.post(self._url, data=body, headers=headers) as response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            async for piece in response.content.iter_any():
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main() -> None:
    upstream, port = sys.argv[1], int(sys.argv[2])
    uvicorn.run(
        FloorRelay(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
