# The gateway as a container: `sluice serve` (the app factory, sluice.http:create_app,
# under uvicorn with uvloop and httptools, header timeouts and a connection cap), as a
# non-root user, healthy while /health/ready says so. compose.yaml runs two of these;
# docs/DEPLOY.md explains the settings.
#
#   docker build -t sluice .
#   docker run -e SLUICE_MASTER_KEY=... -p 8000:8000 sluice
#
# Serving on 0.0.0.0 with no authentication is refused at start (exit 2): set
# SLUICE_MASTER_KEY (16 characters or more).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels sluice \
    && groupadd --system --gid 10001 sluice \
    && useradd --system --uid 10001 --gid sluice --home-dir /var/lib/sluice --create-home sluice
USER sluice
WORKDIR /var/lib/sluice
# SQLite (when no SLUICE_DATABASE_URL is set) and other local state live here.
ENV SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_PORT=8000
EXPOSE 8000
# Ready means: not draining, an upstream reachable, the database and Redis answering.
# It needs a credential once authentication is on; the master key is in the environment.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; r = u.Request('http://127.0.0.1:%s/health/ready' % os.environ.get('SLUICE_PORT', '8000'), headers={'Authorization': 'Bearer ' + os.environ.get('SLUICE_MASTER_KEY', '')}); sys.exit(0 if u.urlopen(r, timeout=4).status == 200 else 1)"]
# SIGTERM drains: new work gets 503, running answers get SLUICE_DRAIN_SECONDS to finish,
# the rest end in-band with `shutting_down` (their clients resume on another replica).
STOPSIGNAL SIGTERM
CMD ["sluice", "serve", "--host", "0.0.0.0"]
