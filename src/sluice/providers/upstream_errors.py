"""An upstream's HTTP status -> the sluice error that says what it means for the client.

One mapping shared by every provider (and the simulator's fault injection), so a 429 is a
429 with its ``Retry-After`` whichever upstream sent it.

The upstream's own explanation is passed on, because it is usually what the client needs
("max_tokens is too large"), but scrubbed first: an upstream or a proxy in front of it
may echo our request back, with the gateway's upstream key, ``api_key=`` parameters and
internal headers in it.
"""

from __future__ import annotations

from sluice.errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from sluice.redact import REDACTOR

#: Longest upstream explanation passed on: enough for any real message, too short to
#: carry a dump of the request.
MAX_DETAIL = 500


def error_for_status(
    status: int, detail: str = "", retry_after: float | None = None
) -> UpstreamError:
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
