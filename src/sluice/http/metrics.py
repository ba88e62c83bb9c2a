"""``GET /metrics``: the Prometheus text format, for the master key or the
``metrics_token`` (a scraper gets a credential that can do nothing else). On a gateway
that requires no authentication, anyone who can reach it may read them, as everything
else there."""

from __future__ import annotations

import hmac

from sluice.errors import PermissionDenied, RequestError
from sluice.http.asgi import Receive, Scope, Send, header, send_error
from sluice.http.gate import Gate, principal_of
from sluice.owners import ANONYMOUS
from sluice.telemetry.metrics import CONTENT_TYPE, Metrics


class MetricsEndpoint:
    def __init__(self, metrics: Metrics, gate: Gate, token: str | None) -> None:
        self._metrics = metrics
        self._gate = gate
        self._token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            error = RequestError("Use GET.", status=405, code="method_not_allowed")
            await send_error(send, error)
            return
        given = header(scope, b"authorization")
        scheme, _, credential = (given or b"").strip().partition(b" ")
        scraper = (
            self._token is not None
            and scheme.lower() == b"bearer"  # auth schemes are case-insensitive (RFC 9110)
            and hmac.compare_digest(credential.strip(), self._token)
        )
        if not scraper:
            if not await self._gate.admit(scope, receive, send):
                return
            principal = principal_of(scope)
            if not (principal.master or principal.owner == ANONYMOUS):
                await send_error(
                    send, PermissionDenied("Metrics need the master key or the metrics token.")
                )
                return
        body = self._metrics.render()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )
