"""``GET /v1/admin/requests``: the request log (master key only), filtered like
``sluice logs``: ``model``, ``key`` (id or name), ``status`` (``404`` or ``5xx``),
``since`` (``10m`` or an ISO date), ``request_id``, ``after`` (rows after this row id,
oldest first: for following), ``limit`` (1-1000)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from sluice.errors import PermissionDenied, RequestError, Unavailable
from sluice.http.gate import PRINCIPAL
from sluice.policy.access import Principal
from sluice.store.request_log import RequestLogStore
from sluice.telemetry.queries import log_filter


def build_router(store: RequestLogStore) -> APIRouter:
    router = APIRouter(tags=["observability"])

    @router.get("/v1/admin/requests")
    async def requests(
        request: Request,
        model: str | None = None,
        key: str | None = None,
        status: str | None = None,
        since: str | None = None,
        request_id: str | None = None,
        after: int | None = None,
        limit: int = 100,
    ) -> dict[str, Any]:
        principal: Principal = request.scope[PRINCIPAL]
        if not principal.master:
            raise PermissionDenied("Reading the request log needs the master key.")
        if after is not None and not 0 <= after < 2**63:
            raise RequestError("after must be a row id (0 or more).", param="after")
        wanted = log_filter(
            model=model, key=key, status=status, since=since, request_id=request_id, limit=limit
        )
        try:
            rows = await store.query(**wanted.as_query(), after_id=after)
        except Exception as exc:
            raise Unavailable(f"The request log cannot be read ({type(exc).__name__}).") from None
        return {"object": "list", "data": rows}

    return router
