"""The browser and network boundary: what a hostile web page or client may not make the
gateway do, checked once per request in plain ASGI, before CORS and authentication.

- Host (DNS rebinding): a page on ``evil.example`` that re-points its DNS name at
  127.0.0.1 talks to us as same-origin, but its requests still say ``Host:
  evil.example``. Only loopback names, IP literals (a rebinding attack needs a DNS name)
  and ``allowed_hosts`` are served; anything else is 421 (a WebSocket handshake, 403).
- Origin (cross-site posts and WebSockets): a request that may change state, or a
  WebSocket, from a page of another origin is 403 unless ``cors_origins`` lists it
  (``*`` lists every origin for plain HTTP, never for WebSockets).
- Content-Type: a body sent to a JSON endpoint must say ``application/json`` (415
  otherwise), so a form or a ``text/plain`` fetch — which browsers send cross-site
  without a preflight — is never read as JSON.
- Body size: a declared ``Content-Length`` past ``max_body_bytes`` is 413 before a byte
  of it is read; a chunked body is counted as it arrives and cut off past the limit.
- Request ids: every request gets one (``sluice.request_ids``: the client's own if
  well-formed, else a new one), bound to its context before anything else runs and sent
  back in ``x-request-id`` on every response — this module's refusals, the app's
  answers, the WebSocket handshake, and a 500 for an app that crashed before answering.

The connection-level defenses (header and body timeouts, connection cap) are in
``http/protocol.py``. Per request this is one scan of the headers; per chunk one type
check on the way out (for the request id), and counting a chunked request body's bytes.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from sluice.errors import (
    BodyTooLarge,
    MisdirectedRequest,
    PermissionDenied,
    RequestError,
    SluiceError,
    UnsupportedMediaType,
)
from sluice.http.asgi import ASGIApp, Message, Receive, Scope, Send, header, send_error
from sluice.request_ids import HEADER as REQUEST_ID
from sluice.request_ids import bind, request_id_for
from sluice.telemetry.record import RequestRecord, begin

logger = logging.getLogger("sluice.http")

#: Methods that cannot change state; anything else from another origin is refused.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Plain files, not a JSON endpoint.
STATIC_PREFIX = "/static/"
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCHEMES = {"ws": "http", "wss": "https"}
#: Host decisions remembered (a few names in practice; cleared if someone sprays them).
_HOST_CACHE_SIZE = 256


def split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (a Host header or an origin's authority) as a lower-case name
    without a trailing dot, and the port; None if it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
    else:
        name, colon, port = value.partition(":")
        rest = colon + port
    if rest in ("", ":"):
        port_number = None
    elif rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit() and len(rest) <= 6:
        port_number = int(rest[1:])
    else:
        return None
    name = name.removesuffix(".")
    return (name, port_number) if name else None


def is_ip_literal(name: str) -> bool:
    try:
        if name.startswith("["):
            ipaddress.IPv6Address(name[1:-1])
        else:
            ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def origin_triple(scheme: str, authority: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in."""
    scheme = _SCHEMES.get(scheme, scheme)
    default = _DEFAULT_PORTS.get(scheme)
    split = split_host(authority)
    if default is None or split is None:
        return None
    name, port = split
    return scheme, name, default if port is None else port


def same_origin(scope: Scope, origin: str) -> bool:
    """Whether ``origin`` is the request's own ``scheme://host:port``."""
    host = header(scope, b"host")
    if host is None:
        return False
    scheme, sep, authority = origin.partition("://")
    if not sep or "/" in authority:
        return False
    theirs = origin_triple(scheme.lower(), authority)
    ours = origin_triple(scope.get("scheme", "http"), host.decode("latin-1"))
    return theirs is not None and theirs == ours


@dataclass(slots=True)
class _Head:
    """The request headers the boundary checks, found in one scan."""

    host: bytes | None = None
    hosts: int = 0
    origin: bytes | None = None
    fetch_site: bytes | None = None
    content_type: bytes | None = None
    length: bytes | None = None
    chunked: bool = False


class Boundary:
    """Wraps the gateway app: every http and websocket request passes here first."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: Iterable[str],
        cors_origins: Iterable[str],
        max_body_bytes: int,
        finished: Callable[[RequestRecord, Scope], None] | None = None,
        traced: Callable[[RequestRecord, Scope], Callable[[], None]] | None = None,
    ) -> None:
        self.app = app
        #: Told of every request once its response is over (metrics, log, request log).
        self._finished = finished
        #: Tracing on: starts each request's span; what it returns ends it.
        self._traced = traced
        hosts = {entry.strip().lower().removesuffix(".") for entry in allowed_hosts}
        self._any_host = "*" in hosts
        self._suffixes = tuple(entry for entry in hosts if entry.startswith("."))
        self._hosts = {entry for entry in hosts if entry and not entry.startswith(".")}
        origins = set(cors_origins)
        self._any_origin = "*" in origins
        # "null" is every sandboxed frame and file: page at once: never a listed origin.
        self._origins = origins - {"*", "null"}
        self._limit = max_body_bytes
        self._host_ok: dict[bytes, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)  # lifespan
            return
        head = _Head()
        sent_id = None
        sent_ids = 0
        for name, value in scope["headers"]:
            if name == b"host":
                head.host = value
                head.hosts += 1
            elif name == REQUEST_ID:
                sent_id = value
                sent_ids += 1
            elif name == b"origin":
                head.origin = value
            elif name == b"content-type":
                head.content_type = value
            elif name == b"content-length":
                head.length = value
            elif name == b"transfer-encoding":
                head.chunked = b"chunked" in value.lower()
            elif name == b"sec-fetch-site":
                head.fetch_site = value
        # Bound here, not reset on the way out: uvicorn gives each request its own task
        # (and so its own context), and its "Exception in ASGI application" line comes
        # after we return, and should carry the id too.
        request_id = request_id_for(sent_id if sent_ids == 1 else None)
        bind(request_id)
        record = begin(request_id, kind, scope.get("method", "GET"), scope["path"])
        send = _with_request_id(send, request_id, record)
        # The span is current in this context from here on, so the answer's task, started
        # while handling the request, runs its upstream attempts under it.
        end_span = self._traced(record, scope) if self._traced is not None else None
        try:
            await self._answer(scope, receive, send, record, head)
        finally:
            if self._finished is not None:
                self._finished(record, scope)
            if end_span is not None:
                end_span()
            # The record stays in the context every task started here inherited (the
            # answer's own task among them): without this, answer -> task -> context ->
            # record -> answer would be a cycle only the garbage collector could free.
            record.generation = None

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        record: RequestRecord,
        head: _Head,
    ) -> None:
        websocket = scope["type"] == "websocket"
        chunked = head.chunked
        try:
            self._check_host(scope, head.host, head.hosts)
            if websocket or scope["method"] not in SAFE_METHODS:
                self._check_origin(scope, head.origin, head.fetch_site, websocket)
            if websocket:
                await self.app(scope, receive, send)
                return
            declared = _declared_length(head.length)
            if (declared > 0 or chunked) and not scope["path"].startswith(STATIC_PREFIX):
                _check_json(head.content_type)
            if declared > self._limit:
                raise BodyTooLarge(
                    f"Request body is {declared} bytes; the limit is {self._limit} bytes."
                )
        except SluiceError as exc:
            if websocket:
                await _refuse_websocket(send)
            else:
                await send_error(send, exc)
            return
        try:
            if chunked:
                counted = _CountedBody(receive, send, self._limit)
                await self.app(scope, counted.receive, counted.send)
            else:
                await self.app(scope, receive, send)
        except Exception as exc:
            if record.status:
                raise  # uvicorn logs it and closes the connection: the body is cut
            # uvicorn's own 500 is plain text without our header: answer it here.
            if isinstance(exc, SluiceError):
                error = exc
            else:
                logger.exception("unhandled error while answering %s", scope["path"][:200])
                error = SluiceError("The server had an error while answering.")
            await send_error(send, error)

    def _check_host(self, scope: Scope, host: bytes | None, hosts: int) -> None:
        if hosts > 1:
            raise RequestError("More than one Host header.", code="invalid_host")
        if host is None:
            if scope.get("http_version") == "1.0":
                return  # HTTP/1.0 has no Host; no browser speaks it
            raise RequestError("Missing Host header.", code="invalid_host")
        allowed = self._host_ok.get(host)
        if allowed is None:
            allowed = self._allowed_host(host)
            if len(self._host_ok) >= _HOST_CACHE_SIZE:
                self._host_ok.clear()
            self._host_ok[host] = allowed
        if not allowed:
            shown = host.decode("latin-1")[:100]
            raise MisdirectedRequest(
                f"This gateway does not serve the host {shown!r}; an operator can add it "
                "to allowed_hosts."
            )

    def _allowed_host(self, raw: bytes) -> bool:
        split = split_host(raw.decode("latin-1"))
        if split is None:
            return False
        name = split[0]
        if name == "localhost" or name.endswith(".localhost") or is_ip_literal(name):
            return True
        if self._any_host or name in self._hosts:
            return True
        # ".example.com" serves example.com and every name under it.
        return any(name.endswith(suffix) or name == suffix[1:] for suffix in self._suffixes)

    def _check_origin(
        self, scope: Scope, origin: bytes | None, fetch_site: bytes | None, websocket: bool
    ) -> None:
        if origin is None:
            # A browser that left Origin out still says where the request comes from.
            if fetch_site == b"cross-site":
                raise PermissionDenied(
                    "Cross-site requests are not allowed here.", code="cross_origin"
                )
            return
        text = origin.decode("latin-1")
        if text in self._origins or (self._any_origin and not websocket):
            return
        if same_origin(scope, text):
            return
        what = "WebSockets" if websocket else "Requests"
        raise PermissionDenied(
            f"{what} from the origin {text[:100]!r} are not allowed here.", code="cross_origin"
        )


def _declared_length(value: bytes | None) -> int:
    if value is None:
        return 0
    try:
        return int(value)
    except ValueError:  # uvicorn's parser refuses these first; never a 500 here either
        raise RequestError("Invalid Content-Length header.") from None


def _check_json(content_type: bytes | None) -> None:
    if content_type is None:
        raise UnsupportedMediaType(
            "A request body must be sent with Content-Type: application/json (none was sent)."
        )
    if content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        sent = content_type.decode("latin-1")[:100]
        raise UnsupportedMediaType(
            f"Content-Type {sent!r} is not supported; send application/json."
        )


async def _refuse_websocket(send: Send) -> None:
    """Refuse the handshake itself: a close before accept is an HTTP 403 and the socket
    never opens. (uvicorn's ``websocket.http.response`` would carry our JSON body and a
    421, but it logs an error for every such refusal: a log an attacker could fill.)"""
    await send({"type": "websocket.close", "code": 1008})


#: The messages that open a response: the HTTP head, a WebSocket handshake's accept.
_HEADS = frozenset({"http.response.start", "websocket.accept"})


def _with_request_id(send: Send, request_id: str, record: RequestRecord) -> Send:
    """The app's ``send`` with ``x-request-id`` added to the response head (HTTP) or the
    handshake's accept (WebSocket); the record learns the status, and when the first
    bytes of the body went out (the client's time to first token).

    A closure handing back the inner send's awaitable, not a coroutine or a class with
    ``__call__``: it is on every chunk's path, where it costs ~40 ns (a class, ~115).
    """
    header = (REQUEST_ID, request_id.encode())

    def send_with_id(message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind in _HEADS:
            record.status = message.get("status", 101)
            message["headers"] = [*message.get("headers", ()), header]
        elif record.first_byte is None and kind == "http.response.body" and message.get("body"):
            record.first_byte = time.monotonic()
        return send(message)

    return send_with_id


class _CountedBody:
    """A chunked request body, counted as it arrives: past the limit the app sees
    ``http.disconnect`` and the client gets a 413 (if no response has started)."""

    __slots__ = ("_answered", "_cut", "_limit", "_receive", "_send", "_size", "_started")

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self._limit = limit
        self._size = 0
        self._started = False
        self._answered = False
        self._cut = False

    async def receive(self) -> Message:
        if self._cut:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self._size += len(message.get("body", b""))
            if self._size > self._limit:
                self._cut = True
                if not self._started:
                    self._started = self._answered = True
                    await send_error(
                        self._send,
                        BodyTooLarge(f"Request body exceeds the limit of {self._limit} bytes."),
                    )
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self._answered:
            return  # the client has its 413; what the app says after that is moot
        if message["type"] == "http.response.start":
            self._started = True
        await self._send(message)
