"""``/v1/admin/cache``: the response cache's figures and clearing it (master key only).

- ``GET /v1/admin/cache``: backend, scope, entries and bytes held, and this process's
  counters (hits, misses, refreshes, bypasses, coalesced requests, answers and bytes
  stored, backend errors);
- ``DELETE /v1/admin/cache[?model=M]``: remove every cached answer, or one model's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sluice.cache.responses import ResponseCache
from sluice.errors import PermissionDenied, RequestError, Unavailable
from sluice.http.gate import PRINCIPAL
from sluice.policy.access import Principal


def build_router(cache: ResponseCache) -> APIRouter:
    router = APIRouter(tags=["cache"])

    def master(request: Request) -> None:
        principal: Principal = request.scope[PRINCIPAL]
        if not principal.master:
            raise PermissionDenied("Managing the response cache needs the master key.")

    @router.get("/v1/admin/cache")
    async def cache_stats(request: Request) -> dict[str, Any]:
        master(request)
        try:
            return {"object": "cache.stats", **await cache.stats()}
        except Exception as exc:
            raise Unavailable(
                f"The response cache's backend cannot be read ({type(exc).__name__})."
            ) from None

    @router.delete("/v1/admin/cache")
    async def cache_clear(request: Request, model: str | None = None) -> dict[str, Any]:
        master(request)
        if model is not None and not model.strip():
            raise RequestError(
                "model must name a model, or be left out to clear all.", param="model"
            )
        try:
            removed = await cache.clear(model)
        except Exception as exc:
            raise Unavailable(
                f"The response cache's backend cannot be cleared ({type(exc).__name__})."
            ) from None
        return {"object": "cache.cleared", "model": model, "removed": removed}

    return router
