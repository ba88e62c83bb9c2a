"""An upstream's HTTP status -> the sluice error that says what it means for the client.

One mapping shared by every provider (and the simulator's fault injection), so a 429 is a
429 with its ``Retry-After`` whichever upstream sent it. What an operator should do about
each class of failure (its ``hint``) is ``sluice.errors.recommendation``; ``upstream_of``
gives it the model's settings to name.

The upstream's own explanation is passed on, because it is usually what the client needs
("max_tokens is too large"), but scrubbed first: an upstream or a proxy in front of it
may echo our request back, with the gateway's upstream key, ``api_key=`` parameters and
internal headers in it.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from sluice.errors import (
    Upstream,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from sluice.redact import REDACTOR
from sluice.settings import ModelConfig

#: Longest upstream explanation passed on: enough for any real message, too short to
#: carry a dump of the request.
MAX_DETAIL = 500


def error_for_status(
    status: int, detail: str = "", retry_after: float | None = None
) -> UpstreamError:
    error = _error_for_status(status, detail, retry_after)
    error.upstream_status = status
    return error


def _error_for_status(status: int, detail: str, retry_after: float | None) -> UpstreamError:
    detail = REDACTOR.scrub_upstream(detail, MAX_DETAIL) if detail else ""
    message = f"upstream returned {status}" + (f": {detail}" if detail else "")
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status in (408, 504):
        return UpstreamTimeout(message)
    if status == 409:
        return UpstreamError(message, status=409, code="upstream_conflict")
    if status in (401, 403):
        # The gateway's own upstream credentials are wrong: not the client's fault, and
        # not something a retry fixes (a fallback on another upstream might).
        error = UpstreamError(
            f"upstream refused the gateway's credentials ({status})", code="upstream_auth"
        )
        error.retryable = False
        return error
    if status < 500:
        return UpstreamRejected(message, status=status)
    return UpstreamUnavailable(
        message, status=503 if status == 503 else 502, retry_after=retry_after
    )


def upstream_of(model: ModelConfig) -> Upstream:
    """The settings of ``model`` a hint may name: the key's variable (never the key), the
    address without credentials or query, the timeouts."""
    return Upstream(
        model=model.name,
        base_url=_shown_url(model.base_url) if model.base_url else None,
        key_variable=model.api_key_env if model.api_key is None else None,
        has_key=model.api_key is not None or model.api_key_env is not None,
        upstream_model=model.upstream_name,
        first_token=model.timeouts.first_token,
    )


def _shown_url(url: str) -> str:
    # A base_url may carry a password (https://user:secret@host) or a key in its query.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a nonsense port: the upstream is unreachable anyway
        port = None
    netloc = host + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
