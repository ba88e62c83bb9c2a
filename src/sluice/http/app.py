"""The gateway's ASGI application.

A thin dispatcher sends the streaming endpoints to their lean plain-ASGI handlers and
everything else to a FastAPI app (models, health, and the REST surface), so the
framework's per-request cost never lands on the per-chunk path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from sluice.chat.recovery import Recovery
from sluice.errors import AuthenticationError, ShuttingDown, SluiceError, Unavailable
from sluice.http.admin import build_router as build_access_router
from sluice.http.answers import EdgeLimits
from sluice.http.asgi import Receive, Scope, Send, error_response, send_error
from sluice.http.attachments import build_router as build_attachments_router
from sluice.http.boundary import Boundary
from sluice.http.cache_admin import build_router as build_cache_router
from sluice.http.chat import ChatEndpoint
from sluice.http.completions import ChatCompletions
from sluice.http.conversations import build_router
from sluice.http.gate import PRINCIPAL, Gate
from sluice.http.health import build_router as build_health_router
from sluice.http.json_response import ORJSONResponse
from sluice.http.memory import ProcessMemory
from sluice.http.messages import PATH as MESSAGES_PATH
from sluice.http.messages import PATHS as MESSAGES_PATHS
from sluice.http.messages import Messages, anthropic_errors, resumed_messages
from sluice.http.metrics import MetricsEndpoint
from sluice.http.moderations import build_router as build_moderations_router
from sluice.http.openapi_docs import ERRORS, document
from sluice.http.requests_admin import build_router as build_requests_router
from sluice.http.responses import PREFIX as RESPONSES_PREFIX
from sluice.http.responses import Responses
from sluice.http.shares import build_public_router as build_shared_router
from sluice.http.shares import build_router as build_shares_router
from sluice.http.streams import PREFIX as STREAMS_PREFIX
from sluice.http.streams import Streams
from sluice.http.streams_admin import build_router as build_streams_router
from sluice.http.validation import nul_in_target
from sluice.http.ws import ChatSocket
from sluice.model_config import ModelConfig
from sluice.owners import key_owner
from sluice.request_ids import current_request_id
from sluice.runtime import Runtime
from sluice.settings import Settings
from sluice.store.database import migrate
from sluice.store.request_log import RequestLogStore
from sluice.store.responses import ResponseStore
from sluice.store.shares import ShareStore
from sluice.telemetry.record import RequestRecord
from sluice.wire.errors import error_object

logger = logging.getLogger("sluice.http")

STATIC = Path(__file__).parent / "static"

#: The page loads only its own files and talks only to its own origin; nothing may frame
#: it. (The same policy is in index.html; frame-ancestors works only as a header.)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

STORE_DOWN = Unavailable("The database is unavailable; retry shortly.", retry_after=1)

SHUTTING_DOWN = ShuttingDown("The server is shutting down; retry the request.", retry_after=1)

_HTTP_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class Gateway:
    """The ASGI callable uvicorn serves."""

    def __init__(self, runtime: Runtime | Settings, *, memory: ProcessMemory | None = None) -> None:
        """``runtime``: the process's objects (``sluice.runtime``), closed with the
        gateway; ``Gateway(settings)`` builds them. ``memory``: the served process's GC
        and allocator tuning (``http/memory.py``), which an embedded gateway goes without."""
        self.runtime = runtime if isinstance(runtime, Runtime) else Runtime.build(runtime)
        self.memory = memory
        settings = self.settings = self.runtime.settings
        self.engine = self.runtime.engine
        self.started = time.time()
        self.draining = False
        self.store = self.runtime.store
        self.keys = self.runtime.keys
        self.access = self.runtime.access
        self.gate = Gate(self.access, settings.cors_origins)
        self.metrics = self.runtime.metrics
        token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
        self.metrics_endpoint = MetricsEndpoint(self.metrics, self.gate, token)
        self.quota = self.runtime.quota
        self.cache = self.runtime.cache
        limits = EdgeLimits(
            settings.max_body_bytes, settings.keepalive_seconds, settings.send_timeout_seconds
        )
        self.completions = ChatCompletions(self.engine, self.quota, self.cache, limits)
        self.messages = Messages(self.engine, self.quota, self.cache, limits)
        responses_store = ResponseStore(
            self.store.engine, keep_seconds=settings.responses_days * 86400
        )
        self.responses = Responses(self.engine, self.quota, self.cache, limits, responses_store)
        #: Set once the drain deadline passed: relays of other instances' streams end
        #: in-band (their clients resume elsewhere).
        self.stopped = asyncio.Event()
        self.streams = Streams(
            self.engine,
            keepalive_seconds=settings.keepalive_seconds,
            send_timeout_seconds=settings.send_timeout_seconds,
            stopped=self.stopped,
            draining=lambda: self.draining,
            encoders={"responses": self.responses.encoder, "messages": resumed_messages},
        )
        self.chat = self.runtime.chat
        self.chat_endpoint = ChatEndpoint(
            self.chat,
            max_body_bytes=settings.max_body_bytes,
            keepalive_seconds=settings.keepalive_seconds,
            send_timeout_seconds=settings.send_timeout_seconds,
        )
        self.api = build_api(self)
        # Host, Origin, Content-Type and body size are checked before CORS and sign-in.
        self.boundary = Boundary(
            self._dispatch,
            allowed_hosts=[*settings.allowed_hosts, settings.host],
            cors_origins=settings.cors_origins,
            max_body_bytes=settings.max_body_bytes,
            finished=self._request_over if settings.telemetry else None,
            traced=self.runtime.tracing.request if self.runtime.tracing is not None else None,
        )
        self.telemetry = self.runtime.telemetry

    def revoked(self, key_id: str) -> None:
        """A key was revoked here: its answers running here end now, in-band, rather
        than stream on to their end. (Other instances see it within the key cache's two
        seconds for new requests; their running answers run on.)"""
        error = AuthenticationError("This API key has been revoked.", code="revoked_api_key")
        ended = self.engine.abort_owned(key_owner(key_id), error)
        if ended:
            logger.info("ended %d running answers of a revoked key", ended)

    def _request_over(self, record: RequestRecord, scope: Scope) -> None:
        principal = scope.get(PRINCIPAL)
        if principal is not None:
            record.owner = principal.owner
            if principal.key is not None:
                record.key_id, record.key_name = principal.key.id, principal.key.name
        self.telemetry.finish(record)

    async def open(self) -> None:
        """Start-up: schema migrations, and answers a crash left mid-stream."""
        await migrate(self.store.engine)
        if self.settings.master_key is not None:
            # A gateway that once had a master key stays closed if it is removed.
            await self.keys.set_auth_required(True)
        # Alone (no shared Redis), every answer still marked streaming is a dead one.
        alone = self.settings.redis_url is None
        recovered = await self.store.recover_interrupted(0.0) if alone else 0
        if recovered:
            logger.warning("marked %d answer(s) interrupted by a restart as incomplete", recovered)
        # With Redis, a sweep keeps finding those whose instance died.
        self.recovery = Recovery(self.store, self.engine.shared)
        self.recovery.start()
        self.metrics.start_sampling()
        self.telemetry.start()
        self.runtime.alerts.start()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.boundary(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            wrapped = await self.gate.cors(scope, send)
            if wrapped is None:
                return  # a preflight, answered
            send = wrapped
            if scope["path"].startswith(MESSAGES_PATH):
                send = anthropic_errors(send)  # Anthropic's error bodies, the door's too
        if kind == "http" and scope["path"] == "/metrics":
            await self.metrics_endpoint(scope, receive, send)  # its own credentials
            return
        if kind in ("http", "websocket") and not await self.gate.admit(scope, receive, send):
            return
        if kind == "http" and (unstorable := nul_in_target(scope)) is not None:
            await send_error(send, unstorable)
            return
        if kind == "http":
            path = scope["path"]
            if self.draining and not path.startswith(("/health", STREAMS_PREFIX)):
                await send_error(send, SHUTTING_DOWN)
                return
            if path == "/v1/chat/completions":
                await self.completions(scope, receive, send)
                return
            if path in MESSAGES_PATHS:
                await self.messages(scope, receive, send)
                return
            if path == RESPONSES_PREFIX or path.startswith(RESPONSES_PREFIX + "/"):
                await self.responses(scope, receive, send)
                return
            if path.startswith(STREAMS_PREFIX):
                await self.streams(scope, receive, send)
                return
            if path == "/chat":
                await self.chat_endpoint(scope, receive, send)
                return
        await self.api(scope, receive, send)

    async def drain(self) -> None:
        """SIGTERM: refuse new work (health turns 503), let active streams finish for
        ``drain_seconds``, then end the rest with an in-band error. Runs while the server
        still listens, so health checks can see the 503."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        ended = await self.engine.drain(self.settings.drain_seconds)
        # Clients reading other instances' streams get the same drain time.
        while self.streams.remote and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        self.stopped.set()
        if ended:
            logger.warning("shutdown: ended %d unfinished stream(s)", ended)
        # Let the responses write their last records before connections are closed.
        await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        await self.responses.aclose()
        await self.recovery.aclose()
        await self.runtime.aclose()


def build_api(gateway: Gateway) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.open()
        if gateway.memory is not None:
            gateway.memory.start(gateway.engine)
        gateway.engine.start_background()
        yield
        if gateway.memory is not None:
            gateway.memory.stop()
        await gateway.aclose()

    api = FastAPI(
        title="sluice",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=ORJSONResponse,
        docs_url="/docs",
        redoc_url=None,
        responses=ERRORS,
    )
    document(api)

    @api.exception_handler(SluiceError)
    async def sluice_error(request: Request, exc: SluiceError) -> Response:
        status, body, headers = error_response(exc)
        return Response(
            body,
            status_code=status,
            headers={name.decode(): value.decode() for name, value in headers},
            media_type="application/json",
        )

    async def store_error(request: Request, exc: Exception) -> Response:
        # The database went away mid-request (a restart, a failover; a driver that
        # cannot connect raises the socket's own OSError): retry shortly.
        logger.warning("a request failed on the database: %s", type(exc).__name__)
        return await sluice_error(request, STORE_DOWN)

    api.add_exception_handler(SQLAlchemyError, store_error)
    api.add_exception_handler(OSError, store_error)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> ORJSONResponse:
        kind = _HTTP_TYPES.get(exc.status_code, "server_error")
        message = str(exc.detail)
        if exc.status_code in (404, 405):
            # What OpenAI answers for a route it does not have, type included.
            message = f"Invalid URL ({request.method} {request.url.path})"
            kind = "invalid_request_error"
        return ORJSONResponse(
            error_object(message, kind, None, None, request_id=current_request_id()),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> ORJSONResponse:
        first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        param = ".".join(loc) or None
        message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}"
        return ORJSONResponse(
            error_object(message, "invalid_request_error", param, request_id=current_request_id()),
            status_code=400,
        )

    api.include_router(build_router(gateway.store, gateway.engine))
    api.include_router(build_attachments_router(gateway.store))
    shares = ShareStore(gateway.store.engine)
    api.include_router(build_shares_router(gateway.store, shares))
    api.include_router(build_shared_router(shares, STATIC / "share.html", PAGE_HEADERS))
    api.include_router(build_cache_router(gateway.cache))
    api.include_router(build_moderations_router(gateway.engine.guardrails, gateway.runtime.limits))
    api.include_router(build_requests_router(RequestLogStore(gateway.store.engine)))
    api.include_router(build_streams_router(gateway.engine, gateway.keys))
    api.include_router(
        build_access_router(
            gateway.keys,
            gateway.access,
            {m.name for m in gateway.engine.models()},
            gateway.settings.session_seconds,
            on_revoked=lambda key_id: gateway.revoked(key_id),
        )
    )
    # The web chat page: plain files shipped in the package, no build step, no CDN.
    api.mount("/static", StaticFiles(directory=STATIC, html=False), name="static")

    @api.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @api.websocket("/ws")
    async def chat_socket(websocket: WebSocket) -> None:
        await ChatSocket(
            websocket,
            gateway.chat,
            gateway.engine,
            gateway.gate.recheck,
            send_timeout=gateway.settings.send_timeout_seconds,
        ).run()

    def model_object(config: ModelConfig) -> dict[str, Any]:
        model: dict[str, Any] = {
            "id": config.name,
            "object": "model",
            "created": int(gateway.started),
            "owned_by": config.provider,
        }
        if config.price is not None:
            # Not in OpenAI's shape (the SDKs keep unknown fields): what an answer costs,
            # in the configured currency units per million tokens.
            model["pricing"] = {"input": config.price.input, "output": config.price.output}
        return model

    @api.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_object(m) for m in gateway.engine.models()]}

    @api.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        gateway.engine.provider(model_id)
        return model_object(next(m for m in gateway.engine.models() if m.name == model_id))

    api.include_router(build_health_router(gateway))

    return api
