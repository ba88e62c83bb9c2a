"""The ``anthropic`` provider: Claude models (and any Messages-compatible server, such as
``sluice sim``) in the Anthropic Messages format, so every edge can use them.

``POST {base_url}/messages`` with ``x-api-key`` and ``anthropic-version``, always
streamed; the chat request is translated by ``wire/anthropic_upstream.py`` and the stream
read by ``wire/anthropic_stream.py``. Failures map through the one upstream mapping
(``upstream_errors.error_for_status``), a mid-stream ``error`` record (``overloaded_error``
above all) by the status its type stands for, so retries and fallbacks treat it as they
would the same failure from any upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from sluice.errors import (
    RequestError,
    UpstreamError,
    UpstreamProtocolError,
)
from sluice.events import Event
from sluice.providers.base import Provider, ProviderContext
from sluice.providers.http_client import HttpClient, streamed
from sluice.providers.openai import retry_after
from sluice.providers.upstream_errors import error_for_status
from sluice.settings import ModelConfig
from sluice.wire.anthropic_errors import status_of, upstream_message
from sluice.wire.anthropic_stream import MessagesDecoder
from sluice.wire.anthropic_upstream import DEFAULT_MAX_TOKENS, chat_to_messages
from sluice.wire.openai_request import ChatRequest
from sluice.wire.sse import SSEDecoder

DEFAULT_BASE_URL = "https://api.anthropic.com/v1"
API_VERSION = "2023-06-01"


class AnthropicProvider:
    def __init__(self, model: ModelConfig, http: HttpClient) -> None:
        options = model.options
        self._http = http
        base = (model.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._url = base + "/messages"
        self._models_url = base + "/models"
        self._upstream_model = model.upstream_name
        self._max_tokens = int(options.get("max_tokens") or DEFAULT_MAX_TOKENS)
        # Only the connect timeout here: the engine owns first-token, idle and total.
        self._timeout = aiohttp.ClientTimeout(sock_connect=model.timeouts.connect)
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "anthropic-version": str(options.get("anthropic_version") or API_VERSION),
        }
        key = model.resolved_api_key()
        if key:
            headers["x-api-key"] = key
        headers.update({str(k): str(v) for k, v in (options.get("headers") or {}).items()})
        self._headers = headers
        self._extra_body: dict[str, Any] = dict(options.get("extra_body") or {})

    def validate(self, request: ChatRequest) -> None:
        """What a Messages upstream cannot do, refused before anything starts."""
        if request.n > 1:
            raise RequestError(
                "This model answers one choice per request ('n' must be 1).", param="n"
            )

    def upstream_body(self, request: ChatRequest) -> dict[str, Any]:
        body = chat_to_messages(
            request.body, model=self._upstream_model, max_tokens=self._max_tokens
        )
        body.update(self._extra_body)
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[list[Event]]:
        data = orjson.dumps(self.upstream_body(request))
        response = await self._http.post(self._url, data, self._headers, self._timeout)
        async with streamed(response):
            if response.status != 200:
                raise await _status_error(response)
            sse = SSEDecoder()
            messages = MessagesDecoder()
            async for piece in response.content.iter_any():
                batch: list[Event] = []
                over = False
                for record in sse.feed(piece):
                    try:
                        payload = orjson.loads(record.data)
                    except orjson.JSONDecodeError:
                        if batch:
                            yield batch
                        raise UpstreamProtocolError(
                            "upstream sent a record that is not valid JSON"
                        ) from None
                    if isinstance(payload, dict) and messages.feed(record.event, payload, batch):
                        over = True
                        break
                if messages.error is not None:
                    if batch:
                        yield batch
                    kind, message = messages.error
                    raise error_for_status(status_of(kind), f"{kind}: {message}")
                if batch:
                    yield batch
                if over:
                    return
            # No message_stop: whole if the answer had finished, else a drop.
            if not messages.ended:
                raise UpstreamError("upstream closed the stream before it finished")

    async def check(self) -> None:
        await self._http.check(self._models_url, self._headers)

    async def aclose(self) -> None:
        """The shared HttpClient is closed by its owner."""


async def _status_error(response: aiohttp.ClientResponse) -> UpstreamError:
    try:
        detail = upstream_message(await response.read())
    except aiohttp.ClientError:
        detail = ""
    return error_for_status(response.status, detail, retry_after(response.headers))


def create(model: ModelConfig, context: ProviderContext) -> Provider:
    return AnthropicProvider(model, context.http)


__all__ = ["AnthropicProvider", "create"]
