"""The backend for ``--url``: a running gateway, over its HTTP API.

Chat turns go to ``POST /chat`` (the app protocol as SSE) and are stopped with
``POST /v1/streams/{id}/cancel``; one-shot asks go to ``/v1/chat/completions``;
history comes from ``/v1/conversations``. A connection lost mid-answer is picked up once
where it left off (``GET /v1/streams/{id}?after=N``: chat turns are detached, so the
answer kept going); if that fails too, the turn ends with a ``connection_error`` frame
and the partial text stays on screen.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import orjson

from sluice.cli.backend import CliError, ConversationInfo, Frame, MessageInfo, cli_error
from sluice.errors import ModelNotFound, NotFound, RequestError, SluiceError
from sluice.wire.sse import SSEDecoder

# No read timeout on streams: the gateway sends a keep-alive comment every
# keepalive_seconds, and a model may think for minutes before its first token.
_STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=10, sock_read=None)
_CALL_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)


class RemoteTurn:
    def __init__(self, backend: RemoteBackend, response: aiohttp.ClientResponse) -> None:
        self._backend = backend
        self._response = response
        self.stream_id = response.headers.get("x-sluice-stream-id")
        self._stopping = False

    async def frames(self) -> AsyncGenerator[Frame, None]:
        decoder = SSEDecoder()
        response = self._response
        resumed = False
        started = False
        while True:
            try:
                async for piece in response.content.iter_any():
                    for event in decoder.feed(piece):
                        frame: Frame = orjson.loads(event.data)
                        kind = frame.get("type")
                        if kind == "start":
                            self.stream_id = frame.get("stream_id") or self.stream_id
                            if started:
                                continue  # a resumed stream starts again; said once
                            started = True
                        yield frame
                        if kind in ("done", "error"):
                            return
                problem = "the gateway closed the stream before the answer ended"
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
                problem = f"the connection to the gateway dropped mid-answer ({_reason(exc)})"
            finally:
                response.release()
            if resumed or self.stream_id is None:
                yield _lost(problem)
                return
            resumed = True
            after = decoder.last_event_id or "0"
            try:
                response = await self._backend.open(
                    "GET", f"/v1/streams/{self.stream_id}?after={quote(after)}", stream=True
                )
            except CliError:
                yield _lost(problem)
                return
            decoder = SSEDecoder()

    async def stop(self) -> None:
        if self._stopping or self.stream_id is None:
            return
        self._stopping = True
        try:
            await self._backend.call("POST", f"/v1/streams/{self.stream_id}/cancel")
        except CliError:
            # The stream may have ended meanwhile; without the gateway there is nothing
            # left to stop but our own connection.
            self._response.close()


def _lost(problem: str) -> Frame:
    return {
        "type": "error",
        "error_type": "connection_error",
        "code": "connection_lost",
        "message": problem,
        "retryable": True,
    }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        return os.strerror(errno).lower() if errno else str(exc.os_error)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the response was cut short"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server disconnected"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text or type(exc).__name__


def _error(status: int, body: Any) -> SluiceError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return SluiceError(f"the gateway answered HTTP {status}", status=status)
    message = str(error.get("message") or f"HTTP {status}")
    code, param = error.get("code"), error.get("param")
    hint = error.get("hint")
    kind: type[SluiceError] = SluiceError
    if code == "model_not_found":
        kind = ModelNotFound
    elif status == 404:
        kind = NotFound
    elif status in (400, 413, 422):
        kind = RequestError
    return kind(
        message, code=code, param=param, status=status, hint=hint if isinstance(hint, str) else None
    )


class RemoteBackend:
    def __init__(self, url: str, key: str | None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"--url {url!r} is not an http(s) URL (e.g. http://127.0.0.1:8000)", 2)
        self.url = url.rstrip("/").removesuffix("/v1")
        self.where = self.url
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._session = aiohttp.ClientSession(headers=headers)
        self._models: list[str] | None = None

    async def open(
        self, method: str, path: str, *, json: Any = None, stream: bool = False
    ) -> aiohttp.ClientResponse:
        """A response with status 200; anything else is a CliError saying what to do."""
        try:
            response = await self._session.request(
                method,
                self.url + path,
                data=None if json is None else orjson.dumps(json),
                headers={"Content-Type": "application/json"} if json is not None else None,
                timeout=_STREAM_TIMEOUT if stream else _CALL_TIMEOUT,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise CliError(
                f"cannot reach the gateway at {self.url} ({_reason(exc)}); "
                "is `sluice serve` running there? check --url"
            ) from None
        if response.status != 200:
            try:
                body = await response.json(content_type=None, loads=orjson.loads)
            except (ValueError, aiohttp.ClientError):
                body = None
            finally:
                response.release()
            raise cli_error(_error(response.status, body), models=self._models)
        return response

    async def call(self, method: str, path: str, *, json: Any = None) -> Any:
        response = await self.open(method, path, json=json)
        try:
            return await response.json(content_type=None, loads=orjson.loads)
        except (ValueError, aiohttp.ClientError) as exc:
            raise CliError(
                f"the gateway at {self.url} sent a response that is not JSON ({_reason(exc)}); "
                "check --url"
            ) from None
        finally:
            response.release()

    async def models(self) -> list[str]:
        if self._models is None:
            data = await self.call("GET", "/v1/models")
            self._models = [str(m["id"]) for m in data.get("data", [])]
        return self._models

    async def default_model(self) -> str:
        models = await self.models()
        if not models:
            raise CliError(f"the gateway at {self.url} serves no models; check its config")
        return models[0]

    async def turn(self, body: dict[str, Any]) -> RemoteTurn:
        if self._models is None:
            await self.models()  # for the list of choices, should the model be unknown
        return RemoteTurn(self, await self.open("POST", "/chat", json=body, stream=True))

    async def chunks(self, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        if "model" not in body:
            body = {**body, "model": await self.default_model()}
        request = {**body, "stream": True, "stream_options": {"include_usage": True}}
        response = await self.open("POST", "/v1/chat/completions", json=request, stream=True)
        decoder = SSEDecoder()
        try:
            async for piece in response.content.iter_any():
                for event in decoder.feed(piece):
                    if event.data == "[DONE]":
                        return
                    chunk: dict[str, Any] = orjson.loads(event.data)
                    yield chunk
                    if "error" in chunk:
                        return
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            yield {"error": {"message": f"the connection dropped mid-answer ({_reason(exc)})"}}
            return
        finally:
            response.close()
        yield {"error": {"message": "the gateway closed the stream before the answer ended"}}

    async def conversations(
        self, *, query: str | None = None, limit: int = 50
    ) -> list[ConversationInfo]:
        # Newest first: the terminal has no pins ("-c" is the latest conversation).
        path = f"/v1/conversations?limit={limit}&pinned_first=false"
        if query:
            path += f"&q={quote(query)}"
        data = await self.call("GET", path)
        return [_conversation(c) for c in data.get("data", [])]

    async def conversation(
        self, conversation_id: str
    ) -> tuple[ConversationInfo, list[MessageInfo]]:
        data = await self.call("GET", f"/v1/conversations/{quote(conversation_id, safe='')}")
        return _conversation(data), [_message(m) for m in data.get("messages", [])]

    async def save_settings(
        self, conversation_id: str, changes: dict[str, Any], options: dict[str, Any]
    ) -> None:
        path = f"/v1/conversations/{quote(conversation_id, safe='')}"
        if options:
            stored = (await self.call("GET", path)).get("options") or {}
            merged = {**stored, **options}
            changes = {**changes, "options": {k: v for k, v in merged.items() if v is not None}}
        if changes:
            await self.call("PATCH", path, json=changes)

    async def aclose(self) -> None:
        await self._session.close()
        # aiohttp's connector closes its transports on the next loop iterations.
        await asyncio.sleep(0)


def _conversation(data: dict[str, Any]) -> ConversationInfo:
    return ConversationInfo(
        id=data["id"],
        title=data.get("title") or "",
        model=data.get("model"),
        system_prompt=data.get("system_prompt"),
        created_at=float(data.get("created_at") or 0),
        updated_at=float(data.get("updated_at") or 0),
        options=options if isinstance(options := data.get("options"), dict) else {},
    )


def _message(data: dict[str, Any]) -> MessageInfo:
    usage = data.get("usage") or {}
    versions = data.get("versions") or {}
    return MessageInfo(
        id=data["id"],
        role=data["role"],
        content=data.get("content") or "",
        model=data.get("model"),
        status=data.get("status") or "complete",
        finish_reason=data.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        ttft_ms=data.get("ttft_ms"),
        duration_ms=data.get("duration_ms"),
        error=data.get("error"),
        created_at=float(data.get("created_at") or 0),
        version=int(versions.get("index", 0)) + 1,
        versions=int(versions.get("count", 1)),
    )
