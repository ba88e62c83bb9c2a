"""Keys and sessions over HTTP.

- ``/v1/admin/keys``: create (the secret is in this one response only), list, revoke —
  the master key only.
- ``/v1/session``: a browser exchanges a key for an HttpOnly, SameSite=Strict session
  cookie (Secure over TLS) and a CSRF token; ``GET`` tells the page whether it must sign
  in; ``DELETE`` signs out (revokes the session).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from sluice.errors import AuthenticationError, PermissionDenied, RequestError
from sluice.http.gate import PRINCIPAL, SESSION_COOKIE, cookie
from sluice.http.validation import Count, ModelNames, Text
from sluice.policy.access import Access, Principal
from sluice.store.keys import KeyStore, period_start

logger = logging.getLogger("sluice.http")


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    models: ModelNames | None = None
    rpm: Count | None = None
    tpm: Count | None = None
    max_concurrent: Count | None = None
    budget_tokens: Count | None = None
    budget_cost: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    period: Literal["day", "month"] | None = None
    expires: dt.date | dt.datetime | None = None


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: Annotated[Text, Field(min_length=1, max_length=500)]


def expiry(value: dt.date | dt.datetime | None) -> float | None:
    if value is None:
        return None
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def check_new_key(body: NewKey, known_models: set[str]) -> None:
    if (body.budget_tokens or body.budget_cost) and not body.period:
        raise RequestError("A budget needs a period: day or month.", param="period")
    unknown = [m for m in body.models or () if m not in known_models]
    if unknown:
        raise RequestError(f"Unknown model(s): {', '.join(unknown)}.", param="models")


def build_router(
    keys: KeyStore,
    access: Access,
    known_models: set[str],
    session_seconds: float,
    on_revoked: Callable[[str], None] | None = None,
) -> APIRouter:
    """``on_revoked(key_id)``: a key was revoked here (its running answers end)."""
    router = APIRouter(tags=["access"])

    def master(request: Request) -> None:
        principal: Principal = request.scope[PRINCIPAL]
        if not principal.master:
            raise PermissionDenied("Managing keys needs the master key.")

    @router.post("/v1/admin/keys")
    async def create_key(body: NewKey, request: Request) -> dict[str, Any]:
        master(request)
        check_new_key(body, known_models)
        key, secret = await keys.create(
            name=body.name,
            models=body.models,
            rpm=body.rpm,
            tpm=body.tpm,
            max_concurrent=body.max_concurrent,
            budget_tokens=body.budget_tokens,
            budget_cost=body.budget_cost,
            budget_period=body.period,
            expires_at=expiry(body.expires),
        )
        access.forget()
        return {**key.public(), "key": secret}

    @router.get("/v1/admin/keys")
    async def list_keys(request: Request) -> dict[str, Any]:
        master(request)
        return {"object": "list", "data": [key.public() for key in await keys.all()]}

    @router.delete("/v1/admin/keys/{key_id}")
    async def revoke_key(key_id: str, request: Request) -> dict[str, Any]:
        master(request)
        key = await keys.revoke(key_id)
        access.forget()
        if on_revoked is not None:
            on_revoked(key.id)
        if not await keys.any_active() and await keys.auth_required():
            logger.warning(
                "the last active API key was revoked; the gateway stays closed (401 without "
                "the master key). `sluice keys auth off` opens it, explicitly."
            )
        return key.public()

    @router.get("/v1/admin/auth")
    async def auth_state(request: Request) -> dict[str, Any]:
        master(request)
        return {"auth_required": await access.required()}

    @router.get("/v1/session")
    async def session_state(request: Request) -> dict[str, Any]:
        required = await access.required()
        token = cookie(request.scope, SESSION_COOKIE)
        session = principal = None
        if token:
            try:
                # Valid as a whole: its key not revoked, its master key unchanged.
                principal = await access.authenticate(None, token)
                session = principal.session
            except AuthenticationError:
                session = None
        state: dict[str, Any] = {
            "auth_required": required,
            "signed_in": session is not None,
            "csrf_token": session.csrf if session else None,
        }
        key = principal.key if session is not None and principal is not None else None
        if key is not None:
            # Who is signed in, and what its budget has left (the page shows it under
            # each answer). Usage is recorded within a second of an answer's end.
            state["key"] = {"name": key.name, "prefix": key.prefix}
            if key.budget_period and key.budget_tokens is not None:
                spent, _ = await keys.spent(key.id, period_start(key.budget_period))
                state["key"]["budget"] = {
                    "period": key.budget_period,
                    "tokens": key.budget_tokens,
                    "remaining_tokens": max(0, key.budget_tokens - spent),
                }
        return state

    @router.post("/v1/session")
    async def sign_in(body: SignIn, request: Request, response: Response) -> dict[str, Any]:
        principal = await access.check_secret(body.key)
        key_id = principal.key.id if principal.key else ""
        fingerprint = access.fingerprint if principal.master else ""
        token, session = await access.sessions.create(key_id, principal.master, fingerprint)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(session_seconds),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return {"signed_in": True, "csrf_token": session.csrf, "expires_at": session.expires_at}

    @router.delete("/v1/session")
    async def sign_out(request: Request, response: Response) -> dict[str, Any]:
        token = cookie(request.scope, SESSION_COOKIE)
        session = await access.sessions.get(token) if token else None
        if session is None:
            raise AuthenticationError("Not signed in.", code="session_expired")
        sent = request.headers.get("x-csrf-token")
        if sent != session.csrf:
            raise PermissionDenied("Missing or wrong X-CSRF-Token.", code="csrf_failed")
        assert token is not None
        await access.sessions.delete(token)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return {"signed_in": False}

    return router
