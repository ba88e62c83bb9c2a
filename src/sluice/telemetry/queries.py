"""Reading the request log: the filters ``sluice logs`` and ``GET /v1/admin/requests``
share, parsed once (pure: text in, values out)."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

from sluice.errors import RequestError
from sluice.telemetry.logs import one_line, request_line

_AGO = re.compile(r"^(\d{1,7})\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class LogFilter:
    model: str | None = None
    key: str | None = None
    status: int | None = None
    status_class: int | None = None
    since: float | None = None
    request_id: str | None = None
    limit: int = 100

    def as_query(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "key": self.key,
            "status": self.status,
            "status_class": self.status_class,
            "since": self.since,
            "request_id": self.request_id,
            "limit": self.limit,
        }


def parse_since(value: str, now: float | None = None) -> float:
    """``10m``, ``2h``, ``1d`` (ago) or an ISO date/time (UTC unless it says) -> epoch."""
    now = time.time() if now is None else now
    found = _AGO.match(value.strip())
    if found:
        return now - int(found.group(1)) * _UNITS[found.group(2)]
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except (ValueError, OverflowError):
        raise RequestError(
            f"since {value!r} is neither a duration (30s, 10m, 2h, 7d) nor an ISO date",
            param="since",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def parse_status(value: str) -> tuple[int | None, int | None]:
    """``404`` -> (404, None); ``5xx`` -> (None, 5)."""
    text = value.strip().lower()
    if re.fullmatch(r"[1-5]xx", text):
        return None, int(text[0])
    if re.fullmatch(r"[1-5]\d\d", text):
        return int(text), None
    raise RequestError(f"status {value!r} is not a status (404) or a class (5xx)", param="status")


def log_filter(
    *,
    model: str | None = None,
    key: str | None = None,
    status: str | None = None,
    since: str | None = None,
    request_id: str | None = None,
    limit: int = 100,
) -> LogFilter:
    exact, kind = parse_status(status) if status else (None, None)
    if not 1 <= limit <= 1000:
        raise RequestError("limit must be between 1 and 1000", param="limit")
    return LogFilter(
        model=model,
        key=key,
        status=exact,
        status_class=kind,
        since=parse_since(since) if since else None,
        request_id=request_id,
        limit=limit,
    )


def row_line(row: dict[str, Any]) -> str:
    """One request log row as a line for a terminal: when, its id, and what its log
    line said."""
    when = dt.datetime.fromtimestamp(row["at"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{when}  {one_line(str(row['request_id']))}  {request_line(row)}"
