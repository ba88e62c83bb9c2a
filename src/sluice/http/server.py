"""Running the gateway: ``create_app``, the factory every server runs (uvicorn, gunicorn's
UvicornWorker, granian), and ``sluice serve``, which runs it under uvicorn (uvloop +
httptools, no access log on the hot path), alone or as ``--workers N``.

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
from sluice.http.shutdown import ServedGateway
from sluice.redact import REDACTOR, logging_config, secrets_of
from sluice.runtime import Runtime
from sluice.settings import Settings
from sluice.telemetry.traces import TraceExport

#: Set by ``sluice serve --workers N`` for its workers (which uvicorn spawns, and which
#: build their own app): the settings the parent loaded, as JSON.
WORKER_SETTINGS_ENV = "SLUICE_WORKER_SETTINGS"
#: prometheus_client's multiprocess directory (its own variable name).
METRICS_DIRECTORY_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: For the factory run straight under a server (``uvicorn --factory
#: sluice.http:create_app``): the config file to load.
CONFIG_ENV = "SLUICE_CONFIG"
#: The name this variable had first; still read.
CONFIG_FILE_ENV = "SLUICE_CONFIG_FILE"
#: The worker count uvicorn and gunicorn take by default (a server's workers are
#: invisible to the app otherwise): more than one needs Redis as ``--workers`` does.
WEB_CONCURRENCY_ENV = "WEB_CONCURRENCY"


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
    options = uvicorn_options(settings)
    # Every logger, every level, every worker: secrets redacted, chat text only on request.
    options["log_config"] = logging_config(settings)
    if settings.workers <= 1:
        app = create_app(settings)
        # Here, not in the library: it changes the whole process.
        raise_open_file_limit()
        uvicorn.Server(uvicorn.Config(app, **options)).run()  # type: ignore[arg-type]
        return
    # The parent serves nothing: it builds the graph only to check the settings (and
    # exports no traces).
    require_shared_state(settings)
    REDACTOR.remember(secrets_of(settings))
    asyncio.run(Runtime.build(settings).aclose())
    raise_open_file_limit()  # workers inherit it
    # Workers are processes uvicorn spawns from an import string, so the settings
    # loaded here travel in the one variable of the environment they inherit (never
    # re-read from files and variables that may have changed meanwhile). Each worker
    # runs the same factory as `uvicorn --factory sluice.http:create_app`, so each
    # drains on SIGTERM (uvicorn's supervisor forwards it) like a single process does.
    os.environ[WORKER_SETTINGS_ENV] = settings_json(settings)
    # Every worker writes its metrics where /metrics (served by any of them) merges
    # them: prometheus_client's multiprocess mode, chosen when it is imported.
    own_directory = not os.environ.get(METRICS_DIRECTORY_ENV)
    if own_directory:
        os.environ[METRICS_DIRECTORY_ENV] = tempfile.mkdtemp(prefix="sluice-metrics-")
    try:
        uvicorn.run(
            "sluice.http:create_app",
            factory=True,
            workers=settings.workers,
            **options,  # type: ignore[arg-type]
        )
    finally:
        if own_directory:
            shutil.rmtree(os.environ.pop(METRICS_DIRECTORY_ENV), ignore_errors=True)


def create_app(settings: Settings | None = None) -> ServedGateway:
    """The application factory every server runs unchanged::

        uvicorn --factory sluice.http:create_app
        gunicorn -k uvicorn.workers.UvicornWorker 'sluice.http:create_app()'
        granian --interface asgi --factory sluice.http:create_app

    and so does ``sluice serve``. Settings: the ones given, else those a ``sluice serve
    --workers N`` parent handed over, else the ``SLUICE_*`` environment over the config
    file named by ``SLUICE_CONFIG``. The app drains on SIGTERM (``http/shutdown.py``)."""
    return ServedGateway(app_from_environment(settings))


def app_from_environment(settings: Settings | None = None) -> Gateway:
    """The gateway of one server process (``create_app`` without the signal drain)."""
    if settings is None:
        settings = settings_from_environment()
        if WORKER_SETTINGS_ENV not in os.environ:
            # Run by a server of the operator's choosing: its worker count, if it says.
            require_shared_state(settings, _web_concurrency())
    require_shared_state(settings)
    REDACTOR.remember(secrets_of(settings))
    # Traces: the standard OTEL_* variables, read here once by each serving process.
    tracing = TraceExport.from_environ(os.environ)
    return Gateway(Runtime.build(settings, tracing=tracing), memory=ProcessMemory())


def settings_from_environment() -> Settings:
    handed = os.environ.get(WORKER_SETTINGS_ENV)
    if handed is not None:
        return Settings.model_validate_json(handed)
    config_file = os.environ.get(CONFIG_ENV) or os.environ.get(CONFIG_FILE_ENV)
    return Settings.load(Path(config_file) if config_file else None)


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


def require_shared_state(settings: Settings, workers: int | None = None) -> None:
    """Several workers are several memories: without Redis a session opened on one is
    unknown to the others (random 401s), each counts its own limits (N times the
    limit), and a stream can only be resumed or stopped on the worker running it."""
    workers = max(settings.workers, workers or 1)
    if workers > 1 and settings.redis_url is None:
        raise ConfigError(
            f"refusing to start {workers} workers without Redis: sessions, rate "
            "limits, budgets, resume and cancel need state shared between workers. Set "
            "SLUICE_REDIS_URL, or use one worker"
        )


def _web_concurrency() -> int:
    try:
        return int(os.environ.get(WEB_CONCURRENCY_ENV, "1"))
    except ValueError:
        return 1
