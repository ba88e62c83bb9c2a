"""The one exception tree of sluice.

::

    SluiceError
    ├── ConfigError              bad settings or config file (CLI exit 2)
    ├── RequestError             the client's request is wrong            400
    │   ├── BodyTooLarge                                                  413
    │   ├── UnsupportedMediaType  a JSON endpoint sent something else     415
    │   ├── MisdirectedRequest   a Host this gateway does not serve       421
    │   ├── ModelNotFound                                                 404
    │   ├── ContentFiltered      a guardrail blocked the request          400
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
``retryable``, ``retry_after``, and for upstream failures a ``hint``: what the operator
can do about it); turning one into an HTTP body, an in-band SSE record, a WebSocket close
code or a CLI line happens in one place per edge. The hints are all in one pure
function, ``recommendation``, at the end of this module.
"""

from __future__ import annotations

from dataclasses import dataclass


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
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.retry_after = retry_after
        self._hint = hint

    @property
    def hint(self) -> str | None:
        """What the operator can do about it (upstream failures; None for the rest):
        one given, else ``recommendation(self)``."""
        return self._hint if self._hint is not None else recommendation(self)

    @hint.setter
    def hint(self, value: str | None) -> None:
        self._hint = value


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


class ContentFiltered(RequestError):
    """A guardrail blocked the request's input; nothing was sent upstream."""

    code = "content_filter"

    def __init__(self, message: str, *, category: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.category = category


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


@dataclass(frozen=True, slots=True)
class Upstream:
    """How one model's upstream is configured, for hints that name what to check
    (``providers.upstream_errors.upstream_of`` builds it from a model's config). Only
    names and an address: never a key."""

    model: str
    base_url: str | None = None
    #: The environment variable ``api_key_env`` names; None with an inline ``api_key``.
    key_variable: str | None = None
    has_key: bool = False
    upstream_model: str | None = None
    first_token: float | None = None


class UpstreamError(SluiceError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True
    #: The upstream's own HTTP status, when it answered with an error.
    upstream_status: int | None = None
    #: Whose upstream failed, when known: hints then name its settings.
    upstream: Upstream | None = None


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


def recommendation(error: SluiceError, upstream: Upstream | None = None) -> str | None:
    """What to do about an upstream failure, as one short instruction for an operator:
    the ``hint`` of error bodies, ``/health`` and the terminal. It names the model's
    settings when its ``Upstream`` is known (``upstream``, else the one the error
    carries). Pure; None for errors that are not the upstream's."""
    if not isinstance(error, UpstreamError):
        return None
    up = upstream or error.upstream
    model = f"model {up.model!r}" if up else "the model"
    base_url = f"base_url of {model}" + (f" ({up.base_url})" if up and up.base_url else "")
    code = error.code
    if isinstance(error, UpstreamTimeout):
        if code == "first_token_timeout":
            now = f" (now {up.first_token:g} s)" if up and up.first_token is not None else ""
            return f"raise timeouts.first_token of {model}{now}, or check the upstream's load"
        if code == "idle_timeout":
            return f"raise timeouts.idle of {model}, or check the upstream's load"
        if code == "total_timeout":
            return f"raise timeouts.total of {model}, or ask for shorter answers"
        if code == "connect_timeout":
            return f"check {base_url} and the network path to it"
        return f"check the upstream's load, or add fallbacks to {model}"
    if isinstance(error, UpstreamRateLimited):
        return (
            "lower the concurrency sent to this upstream (the keys' rate limits), or add "
            f"fallbacks to {model}"
        )
    if code == "upstream_auth":
        if up and up.key_variable:
            where = f"the environment variable {up.key_variable} (api_key_env of {model})"
        elif up and up.has_key:
            where = f"api_key of {model}"
        elif up:
            where = f"{model}'s key: it has none; set api_key_env"
        else:
            where = f"the key of {model} (api_key, or the variable api_key_env names)"
        return f"check {where}: the upstream refused it"
    if isinstance(error, UpstreamRejected):
        name = f" ({up.upstream_model})" if up and up.upstream_model else ""
        return (
            f"check the model name the upstream is sent{name}, upstream_model of {model}, "
            "and the request's parameters: the upstream refused them"
        )
    if isinstance(error, UpstreamProtocolError):
        return f"check that {base_url} is an OpenAI-compatible API"
    if code == "upstream_conflict":
        return f"retry: a conflict usually passes (retry.attempts of {model})"
    status = error.upstream_status
    if status is not None and status >= 500:
        return (
            f"the upstream's own trouble ({status}): add retries (retry.attempts) or "
            f"fallbacks to {model}"
        )
    if isinstance(error, UpstreamUnavailable):
        return f"check {base_url} and that the upstream server is up"
    return (
        "check the upstream's logs; a fallback covers failures before the first token, "
        "failover = true those after it"
    )


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
    "Upstream",
    "UpstreamError",
    "UpstreamProtocolError",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "recommendation",
]
