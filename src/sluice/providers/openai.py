"""The ``openai`` provider: any OpenAI-compatible upstream (OpenAI, vLLM, Ollama,
llama.cpp server, LM Studio, ``sluice sim``).

Per chunk it does the least it can: find the event boundary, parse the chunk's JSON once
and map it to events. It always asks the upstream for usage (``stream_options``); whether
the client sees the usage chunk is the edge's business.
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from sluice.errors import (
    UpstreamError,
    UpstreamProtocolError,
)
from sluice.events import Event
from sluice.providers.base import Provider, ProviderContext
from sluice.providers.http_client import HttpClient, streamed
from sluice.providers.upstream_errors import error_for_status
from sluice.settings import ModelConfig
from sluice.wire.openai_chunks import decode_chunk
from sluice.wire.openai_request import ChatRequest
from sluice.wire.sse import SSEDecoder

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Fields the gateway owns on the upstream call; everything else passes through.
_GATEWAY_FIELDS = ("model", "stream", "stream_options")


class OpenAIProvider:
    def __init__(self, model: ModelConfig, http: HttpClient) -> None:
        options = model.options
        self._http = http
        self._url = (model.base_url or DEFAULT_BASE_URL) + "/chat/completions"
        self._models_url = (model.base_url or DEFAULT_BASE_URL) + "/models"
        self._upstream_model = model.upstream_name
        self._stream_usage = bool(options.get("stream_usage", True))
        # Only the connect timeout lives here: first-token, idle and total deadlines are
        # the engine's (one cheap watchdog per generation, not a timer per read).
        self._timeout = aiohttp.ClientTimeout(sock_connect=model.timeouts.connect)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = model.resolved_api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if options.get("organization"):
            headers["OpenAI-Organization"] = str(options["organization"])
        headers.update({str(k): str(v) for k, v in (options.get("headers") or {}).items()})
        self._headers = headers
        # Per-model fields merged into every upstream body (vendor parameters, defaults).
        self._extra_body: dict[str, Any] = dict(options.get("extra_body") or {})

    def upstream_body(self, request: ChatRequest) -> dict[str, Any]:
        body = {k: v for k, v in request.body.items() if k not in _GATEWAY_FIELDS}
        body.update(self._extra_body)
        body["model"] = self._upstream_model
        body["stream"] = True
        if self._stream_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[list[Event]]:
        # The body is not bound to a name: this frame lives as long as the stream.
        response = await self._http.post(
            self._url, orjson.dumps(self.upstream_body(request)), self._headers, self._timeout
        )
        async with streamed(response):
            if response.status != 200:
                raise await _status_error(response)
            decoder = SSEDecoder()
            saw_finish = False
            async for piece in response.content.iter_any():
                batch: list[Event] = []
                for sse in decoder.feed(piece):
                    data_text = sse.data
                    if data_text == "[DONE]":
                        if batch:
                            yield batch
                        return
                    try:
                        chunk = orjson.loads(data_text)
                    except orjson.JSONDecodeError:
                        if batch:
                            yield batch
                        raise UpstreamProtocolError(
                            "upstream sent a chunk that is not valid JSON"
                        ) from None
                    saw_finish = decode_chunk(chunk, batch) or saw_finish
                if batch:
                    yield batch
            # Some servers end without [DONE]; a stream that finished its choices is whole.
            if not saw_finish:
                raise UpstreamError("upstream closed the stream before it finished")

    async def check(self) -> None:
        await self._http.check(self._models_url, self._headers)

    async def aclose(self) -> None:
        """The shared HttpClient is closed by its owner."""


async def _status_error(response: aiohttp.ClientResponse) -> UpstreamError:
    status = response.status
    try:
        raw = await response.read()
        body = orjson.loads(raw)
        error = body.get("error") if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        detail = detail or (error if isinstance(error, str) else None) or raw.decode()[:200]
    except (orjson.JSONDecodeError, UnicodeDecodeError, aiohttp.ClientError):
        detail = ""
    return error_for_status(status, detail, retry_after(response.headers))


def retry_after(headers: Any) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI's) or ``Retry-After``; None when
    absent or nonsense (negative, not finite, more than a day)."""
    value = _retry_after(headers)
    if value is None or not math.isfinite(value) or value > 86400:
        return None
    return value


def _retry_after(headers: Any) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())


def create(model: ModelConfig, context: ProviderContext) -> Provider:
    return OpenAIProvider(model, context.http)


__all__ = ["OpenAIProvider", "create", "retry_after"]
