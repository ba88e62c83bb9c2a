"""Health: ``/health`` (what an operator wants at a glance), ``/health/live`` (the
process answers; streams held) and ``/health/ready`` (a load balancer may send traffic:
an upstream can serve and shared state is reachable). Draining turns them 503."""

from __future__ import annotations

import time
from typing import Protocol

from fastapi import APIRouter

from sluice.engine.engine import Engine
from sluice.http.json_response import ORJSONResponse
from sluice.http.upstream_health import upstream_health
from sluice.runtime import Runtime
from sluice.store.conversations import SQLStore


class Served(Protocol):
    """What the health routes read of the gateway."""

    engine: Engine
    store: SQLStore
    runtime: Runtime
    started: float
    draining: bool


def build_router(gateway: Served) -> APIRouter:
    api = APIRouter(tags=["health"])

    @api.get("/health")
    async def summary() -> ORJSONResponse:
        """What an operator wants at a glance."""
        engine = gateway.engine
        upstreams, hints = await upstream_health(engine)
        state = await engine.check_state()
        try:
            await gateway.store.ping()
            store = "ok"
        except Exception as exc:  # any driver error means the store is not usable
            store = f"unreachable: {type(exc).__name__}"
        reachable = sum(1 for status in upstreams.values() if status == "ok")
        healthy = bool(reachable) and store == "ok" and all(v == "ok" for v in state.values())
        alerts = gateway.runtime.alerts.report()
        if gateway.draining:
            status = "draining"
        elif not healthy:
            status = "down"
        else:
            status = "ok" if reachable == len(upstreams) and not alerts else "degraded"
        body = {
            "status": status,
            "uptime_seconds": round(time.time() - gateway.started, 3),
            **engine.recent.summary(),
            "active_streams": len(engine.running()),
            "store": store,
            "state": state,
            "upstreams": upstreams,
            # What to check, for each upstream that is not "ok".
            "upstream_hints": hints,
            # Alerts firing now (thresholds in [alerts]).
            "alerts": alerts,
        }
        return ORJSONResponse(body, 200 if healthy and not gateway.draining else 503)

    @api.get("/health/live")
    async def live() -> ORJSONResponse:
        engine = gateway.engine
        body = {
            "status": "draining" if gateway.draining else "ok",
            "uptime_seconds": round(time.time() - gateway.started, 3),
            "streams": {"running": len(engine.running()), "retained": engine.retained},
        }
        return ORJSONResponse(body, 503 if gateway.draining else 200)

    @api.get("/health/ready")
    async def ready() -> ORJSONResponse:
        if gateway.draining:
            return ORJSONResponse({"status": "draining"}, 503)
        upstreams = await gateway.engine.check()
        reachable = sum(1 for status in upstreams.values() if status == "ok")
        state = await gateway.engine.check_state()
        try:
            await gateway.store.ping()
            state["store"] = "ok"
        except Exception as exc:  # any driver error means the store is not usable
            state["store"] = f"unreachable: {type(exc).__name__}"
        # Ready while any upstream can serve: one model's outage should not take the
        # whole gateway out of a load balancer. Shared state down means not ready.
        healthy = reachable and all(value == "ok" for value in state.values())
        status = "ok" if reachable == len(upstreams) else "degraded" if reachable else "down"
        if not healthy:
            status = "down"
        return ORJSONResponse(
            {"status": status, "upstreams": upstreams, "state": state},
            status_code=200 if healthy else 503,
        )

    return api
