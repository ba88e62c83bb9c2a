"""The one exception tree of sluice.

::

    SluiceError
    ├── ConfigError              bad settings or config file (CLI exit 2)
    ├── RequestError             the client's request is wrong            400
    │   ├── BodyTooLarge                                                  413
    │   ├── UnsupportedMediaType  a JSON endpoint sent something else     415
    │   ├── MisdirectedRequest   a Host this gateway does not serve       421
    │   ├── ModelNotFound                                                 404
    │   └── NotFound             an unknown stream, conversation …        404
    ├── AuthenticationError      no or a wrong key / session              401
    ├── PermissionDenied         a key that may not do this               403
    ├── RateLimited              the gateway's own limits                 429
    │   └── BudgetExceeded       a key's token / cost budget is spent     429
    ├── ShuttingDown             the server is draining                   503
    ├── Unavailable              shared state (Redis, the database) or    503
    │                            capacity is missing; retry later
    └── UpstreamError            the model provider failed                502
        ├── UpstreamUnavailable  refused / unreachable / 503              502, 503
        ├── UpstreamRateLimited  upstream 429, with retry_after           429
        ├── UpstreamRejected     upstream 4xx about the request           that 4xx
        ├── UpstreamProtocolError  malformed stream                       502
        └── UpstreamTimeout                                               504

Each class carries what an edge needs (``status``, ``type``, ``code``, ``param``,
``retryable``, ``retry_after``); turning one into an HTTP body, an in-band SSE record, a
WebSocket close code or a CLI line happens in one place per edge.
"""

from __future__ import annotations


class SluiceError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after


class ConfigError(SluiceError):
    code = "config_error"


class RequestError(SluiceError):
    status = 400
    type = "invalid_request_error"


class BodyTooLarge(RequestError):
    status = 413
    code = "request_too_large"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"


class MisdirectedRequest(RequestError):
    status = 421
    code = "misdirected_request"


class ModelNotFound(RequestError):
    status = 404
    code = "model_not_found"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class AuthenticationError(SluiceError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(SluiceError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class RateLimited(SluiceError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        #: x-ratelimit-* headers, as OpenAI sends them.
        self.headers = headers or []


class BudgetExceeded(RateLimited):
    type = "insufficient_quota"
    code = "insufficient_quota"
    retryable = False


class ShuttingDown(SluiceError):
    status = 503
    type = "server_error"
    code = "shutting_down"
    retryable = True


class Unavailable(SluiceError):
    """Something the gateway needs is missing for now (Redis or the database down, or
    the gateway at capacity): fail closed, with a ``Retry-After``."""

    status = 503
    type = "server_error"
    code = "service_unavailable"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = 1, **kwargs: object) -> None:
        super().__init__(message, retry_after=retry_after, **kwargs)  # type: ignore[arg-type]


class UpstreamError(SluiceError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamRateLimited(UpstreamError):
    status = 429
    type = "rate_limit_error"
    code = "upstream_rate_limited"


class UpstreamRejected(UpstreamError):
    """The upstream refused the request itself (a 4xx other than 408/409/429):
    retrying or falling back would not help."""

    type = "invalid_request_error"
    code = "upstream_rejected"
    retryable = False


class UpstreamProtocolError(UpstreamError):
    code = "upstream_protocol_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout_error"
    code = "upstream_timeout"


__all__ = [
    "AuthenticationError",
    "BodyTooLarge",
    "BudgetExceeded",
    "ConfigError",
    "MisdirectedRequest",
    "ModelNotFound",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestError",
    "ShuttingDown",
    "SluiceError",
    "Unavailable",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]
