"""The door every request passes: CORS, authentication, CSRF — once per request, in
plain ASGI, before any endpoint runs.

- CORS: an explicit allow-list (``cors_origins``); same-origin is always allowed;
  ``*`` is honoured only without credentials. A preflight from elsewhere gets 403.
- Authentication: everything but liveness, the page and its files, sign-in and
  share links needs a Bearer key or a session cookie once authentication is on (see
  ``policy.access``). The principal is put in the scope for the endpoints.
- CSRF: a request authenticated by the session cookie that changes state must echo the
  session's CSRF token in ``X-CSRF-Token``; a WebSocket opened with the cookie must come
  from an allowed origin.
"""

from __future__ import annotations

import hmac

from sluice.errors import AuthenticationError, PermissionDenied, SluiceError
from sluice.http.asgi import Message, Receive, Scope, Send, header, send_error
from sluice.http.boundary import same_origin
from sluice.policy.access import Access, Principal

SESSION_COOKIE = "sluice_session"
CSRF_HEADER = b"x-csrf-token"
PRINCIPAL = "sluice.principal"
#: Open without a key: liveness, the page's files, and read-only share links (whose
#: token is the credential; see http/shares.py).
_EXEMPT = ("/health/live", "/static/", "/v1/shared/", "/share/")
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def principal_of(scope: Scope) -> Principal:
    principal: Principal = scope[PRINCIPAL]
    return principal


def authorization(scope: Scope) -> bytes | None:
    """The Authorization header; Anthropic's clients send the key as ``x-api-key``
    instead, which counts as ``Bearer <key>``."""
    value = header(scope, b"authorization")
    if value is None and (key := header(scope, b"x-api-key")) is not None:
        return b"Bearer " + key
    return value


def cookie(scope: Scope, name: str) -> str | None:
    raw = header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class Gate:
    def __init__(self, access: Access, cors_origins: list[str]) -> None:
        self.access = access
        # "null" (sandboxed frames, file: pages) is never a listed origin: see boundary.py.
        self._origins = set(cors_origins) - {"null"}
        self._any = "*" in self._origins

    def _allowed_origin(self, scope: Scope, origin: str) -> bool:
        # Same-origin as the boundary (http/boundary.py) judges it: default ports filled in.
        if same_origin(scope, origin) or origin in self._origins:
            return True
        # A wildcard is for plain requests without credentials, never for a WebSocket.
        return self._any and scope["type"] != "websocket"

    async def cors(self, scope: Scope, send: Send) -> Send | None:
        """Answer a preflight (returns None), or wrap ``send`` to add CORS headers."""
        origin_raw = header(scope, b"origin")
        if origin_raw is None:
            return send
        origin = origin_raw.decode("latin-1")
        same = same_origin(scope, origin)
        allowed = self._allowed_origin(scope, origin)
        if scope["method"] == "OPTIONS" and header(scope, b"access-control-request-method"):
            if not allowed:
                await send_error(send, PermissionDenied(f"Origin {origin} is not allowed."))
                return None
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        *self._cors_headers(origin),
                        (b"access-control-allow-methods", b"GET, POST, PATCH, DELETE, OPTIONS"),
                        (
                            b"access-control-allow-headers",
                            b"authorization, content-type, x-csrf-token, last-event-id, "
                            b"x-sluice-on-disconnect, x-api-key, anthropic-version",
                        ),
                        (b"access-control-max-age", b"600"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return None
        if same or not allowed:
            return send  # no CORS headers: the browser keeps the response from the page
        extra = self._cors_headers(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return send_with_cors

    def _cors_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        if origin in self._origins:
            return [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-credentials", b"true"),
                (
                    b"access-control-expose-headers",
                    b"x-sluice-stream-id, x-request-id, x-sluice-cache, x-sluice-coalesced, "
                    b"retry-after",
                ),
                (b"vary", b"Origin"),
            ]
        # A wildcard never goes with credentials.
        return [(b"access-control-allow-origin", b"*"), (b"vary", b"Origin")]

    async def admit(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Authenticate (and CSRF-check) the request; False if it was refused."""
        path = scope["path"]
        if path in ("/", "/v1/session") or path.startswith(_EXEMPT):
            scope[PRINCIPAL] = Principal()
            return True
        try:
            principal = await self.access.authenticate(
                authorization(scope), cookie(scope, SESSION_COOKIE)
            )
            if principal.session is not None:
                self._check_csrf(scope, principal)
        except SluiceError as exc:
            await refuse(scope, receive, send, exc)
            return False
        scope[PRINCIPAL] = principal
        return True

    async def recheck(self, scope: Scope) -> None:
        """Is the principal an open connection was admitted as still valid? Raises if
        its key was revoked or expired, its session ended, or the gateway's
        authentication changed under it. Cached like every lookup (two seconds)."""
        if scope["path"] in ("/", "/v1/session") or scope["path"].startswith(_EXEMPT):
            return
        principal = await self.access.authenticate(
            authorization(scope), cookie(scope, SESSION_COOKIE)
        )
        if principal.owner != principal_of(scope).owner:
            raise AuthenticationError("The credentials of this connection changed; reconnect.")

    def _check_csrf(self, scope: Scope, principal: Principal) -> None:
        assert principal.session is not None
        if scope["type"] == "websocket":
            origin = header(scope, b"origin")
            if origin is None or not self._allowed_origin(scope, origin.decode("latin-1")):
                raise PermissionDenied("This WebSocket comes from an origin that is not allowed.")
            return
        if scope["method"] in _SAFE_METHODS:
            return
        token = header(scope, CSRF_HEADER)
        if token is None or not hmac.compare_digest(token, principal.session.csrf.encode()):
            raise PermissionDenied(
                "Missing or wrong X-CSRF-Token for a request signed in by cookie.",
                code="csrf_failed",
            )


async def refuse(scope: Scope, receive: Receive, send: Send, exc: SluiceError) -> None:
    if scope["type"] == "websocket":
        # Accept, then close with 1008 (policy violation): browsers see the reason.
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})
        return
    await send_error(send, exc)
