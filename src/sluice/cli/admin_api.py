"""A running gateway's admin API, for the commands that reach it with ``--url``
(``sluice cache``, ``sluice logs``): the master key from ``SLUICE_MASTER_KEY``, and one
place that turns an answer into a value or a one-line ``sluice: error:``."""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson
import typer

from sluice.cli.terminal import fail

TIMEOUT = aiohttp.ClientTimeout(total=30)


def gateway_url(url: str) -> str:
    """``--url`` checked (exit 2 if it is not http(s)), without a trailing slash."""
    if not url.startswith(("http://", "https://")):
        raise fail(f"--url {url!r} is not an http(s) URL", 2)
    return url.rstrip("/")


def admin_session() -> aiohttp.ClientSession:
    master = os.environ.get("SLUICE_MASTER_KEY")
    headers = {"Authorization": f"Bearer {master}"} if master else {}
    return aiohttp.ClientSession(timeout=TIMEOUT, headers=headers)


async def admin_json(session: aiohttp.ClientSession, method: str, url: str, *, what: str) -> Any:
    """The JSON body of a 200; anything else exits 1 with the gateway's own message
    (``what`` names the API in the hint about the master key)."""
    async with session.request(method, url) as response:
        try:
            body = orjson.loads(await response.read() or b"null")
        except orjson.JSONDecodeError:
            body = None
        if response.status == 200:
            return body
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        message = message or f"the gateway answered HTTP {response.status}"
        if response.status in (401, 403):
            message += f" ({what} needs the master key in SLUICE_MASTER_KEY)"
        raise fail(message, 1)


def unreachable(url: str, exc: BaseException) -> typer.Exit:
    return fail(f"cannot reach the gateway at {url} ({type(exc).__name__})", 1)
