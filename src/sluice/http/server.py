"""Running the gateway under uvicorn (uvloop + httptools, no access log on the hot path).

This is the server process's edge: what changes the whole process happens here (the
open-file limit, logging, GC and allocator tuning through ``http/memory.py``), and so
does the one environment variable ``--workers N`` hands the settings over in, and the
reading of the standard ``OTEL_*`` variables that turn traces on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any

import orjson
import uvicorn
from pydantic import SecretStr

from sluice.errors import ConfigError
from sluice.http.app import Gateway
from sluice.http.memory import ProcessMemory
from sluice.http.protocol import GatewayProtocol
from sluice.redact import REDACTOR, logging_config, secrets_of
from sluice.runtime import Runtime
from sluice.settings import Settings
from sluice.telemetry.traces import TraceExport

#: Set by ``sluice serve --workers N`` for its workers (which uvicorn spawns, and which
#: build their own app): the settings the parent loaded, as JSON.
WORKER_SETTINGS_ENV = "SLUICE_WORKER_SETTINGS"
#: prometheus_client's multiprocess directory (its own variable name).
METRICS_DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: For the factory run straight under uvicorn (``uvicorn --factory
#: sluice.http.server:app_from_environment``): the config file to load.
CONFIG_FILE_ENV = "SLUICE_CONFIG_FILE"


def uvicorn_options(settings: Settings) -> dict[str, object]:
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        # httptools, plus a header timeout and a connection cap (slowloris).
        "http": GatewayProtocol,
        "ws": "websockets-sansio",
        # Larger client frames close the socket with 1009.
        "ws_max_size": settings.max_body_bytes,
        "lifespan": "on",
        "access_log": False,
        "log_level": settings.log_level,
        "server_header": False,
        # X-Forwarded-For rewriting costs per request; trusted proxies are configured
        # explicitly when needed.
        "proxy_headers": False,
        # Our own drain (drain_seconds) runs first; this only bounds closing afterwards.
        "timeout_graceful_shutdown": 5,
    }


class GatewayServer(uvicorn.Server):
    """uvicorn, with the gateway's drain run first on shutdown (while still listening)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        gateway = _find_gateway(self.config.loaded_app)
        if gateway is not None and not self.force_exit:
            await gateway.drain()
        await super().shutdown(sockets)


def _find_gateway(app: object) -> Gateway | None:
    # uvicorn may wrap the application in its own middleware.
    for _ in range(8):
        if isinstance(app, Gateway):
            return app
        app = getattr(app, "app", None)
    return None


def raise_open_file_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: each connection is a descriptor, and the
    usual soft 1024 is below ``max_connections`` plus upstream sockets and files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # "Unlimited" is not a value the kernel accepts for open files; 1M is its usual cap.
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        # If refused, keep the soft limit: the connection cap still bounds what we use.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or Ctrl-C. Settings that cannot work (a bad model table or
    database URL) raise ConfigError before anything is served, in this process."""
    # Traces: the standard OTEL_* variables, read here once (workers read the same ones
    # they inherit). The parent of workers serves nothing, so it exports nothing.
    tracing = TraceExport.from_environ(os.environ)
    runtime = Runtime.build(settings, tracing=tracing if settings.workers <= 1 else None)
    # Here, not in the library: it changes the whole process, and workers inherit it.
    raise_open_file_limit()
    options = uvicorn_options(settings)
    # Every logger, every level, every worker: secrets redacted, chat text only on request.
    options["log_config"] = logging_config(settings)
    REDACTOR.remember(secrets_of(settings))
    if settings.workers > 1:
        # The parent serves nothing: it built the graph only to check the settings.
        asyncio.run(runtime.aclose())
        # Workers are processes uvicorn spawns from an import string, so the settings
        # loaded here travel in the one variable of the environment they inherit (never
        # re-read from files and variables that may have changed meanwhile).
        os.environ[WORKER_SETTINGS_ENV] = settings_json(settings)
        # uvicorn's supervisor builds plain Servers in the workers, so with N workers a
        # SIGTERM drains through uvicorn's graceful timeout (drain_seconds) rather than
        # the gateway's drain: streams still finish, but ones cut at the deadline get no
        # in-band error record. See docs/ARCHITECTURE.md.
        options["timeout_graceful_shutdown"] = settings.drain_seconds
        # Every worker writes its metrics where /metrics (served by any of them) merges
        # them: prometheus_client's multiprocess mode, chosen when it is imported.
        own_directory = not os.environ.get(METRICS_DIRECTORY_ENV)
        if own_directory:
            os.environ[METRICS_DIRECTORY_ENV] = tempfile.mkdtemp(prefix="sluice-metrics-")
        try:
            uvicorn.run(
                "sluice.http.server:app_from_environment",
                factory=True,
                workers=settings.workers,
                **options,  # type: ignore[arg-type]
            )
        finally:
            if own_directory:
                shutil.rmtree(os.environ.pop(METRICS_DIRECTORY_ENV), ignore_errors=True)
        return
    gateway = Gateway(runtime, memory=ProcessMemory())
    config = uvicorn.Config(gateway, **options)  # type: ignore[arg-type]
    GatewayServer(config).run()


def app_from_environment() -> Gateway:
    """The app of one worker process: the settings its parent handed over, else (run
    straight under uvicorn) loaded from the environment and ``SLUICE_CONFIG_FILE``."""
    handed = os.environ.get(WORKER_SETTINGS_ENV)
    if handed is not None:
        settings = Settings.model_validate_json(handed)
    else:
        config_file = os.environ.get(CONFIG_FILE_ENV)
        settings = Settings.load(Path(config_file) if config_file else None)
    require_shared_state(settings)
    REDACTOR.remember(secrets_of(settings))
    tracing = TraceExport.from_environ(os.environ)
    return Gateway(Runtime.build(settings, tracing=tracing), memory=ProcessMemory())


def settings_json(settings: Settings) -> str:
    """Settings as JSON that ``Settings.model_validate_json`` reads back unchanged,
    secrets included (unlike pydantic's own JSON, which masks them)."""
    return orjson.dumps(settings.model_dump(), default=_revealed).decode()


def _revealed(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot hand over a {type(value).__name__}")


def require_shared_state(settings: Settings) -> None:
    """Several workers are several memories: without Redis a session opened on one is
    unknown to the others (random 401s), each counts its own limits (N times the
    limit), and a stream can only be resumed or stopped on the worker running it."""
    if settings.workers > 1 and settings.redis_url is None:
        raise ConfigError(
            f"refusing to start {settings.workers} workers without Redis: sessions, rate "
            "limits, budgets, resume and cancel need state shared between workers. Set "
            "SLUICE_REDIS_URL, or use one worker"
        )
