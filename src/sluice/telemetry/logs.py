"""The log's shape: JSON lines when stderr is not a terminal (a collector's input),
plain lines on a terminal (a person's). Every record carries its request id; the
per-request line (logger ``sluice.requests``) carries the request's facts as fields.

Records reach these formatters after the redacting filter (``sluice.redact``) rewrote
them: the message is final, secrets are out, and the facts hold no text or secret.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

#: The logger of the one line per request.
REQUESTS = "sluice.requests"
_CONTROL = dict.fromkeys([*range(0x20), 0x7F], "?")


def one_line(text: str) -> str:
    """``text`` with every control character replaced: no CR/LF or escape sequence in a
    value may forge another line or drive an operator's terminal."""
    return text.translate(_CONTROL)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the
    request's facts (for ``sluice.requests``) and the exception, if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        facts = getattr(record, "request", None)
        if isinstance(facts, dict):
            line.update((k, v) for k, v in facts.items() if v is not None and k not in line)
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def request_line(facts: dict[str, Any]) -> str:
    """The readable form of a request's facts (the message of its log line)."""
    parts = [f"{facts['method']} {facts['route']} {facts['status']}"]
    for name, label in (
        ("model", "model"),
        ("key_name", "key"),
        ("ttft_ms", "ttft_ms"),
        ("prompt_tokens", "in"),
        ("completion_tokens", "out"),
        ("duration_ms", "ms"),
        ("retries", "retries"),
        ("cost", "cost"),
        ("cache", "cache"),
        ("finish_reason", "finish"),
        ("error", "error"),
    ):
        value = facts.get(name)
        if (value is not None and value != 0) or name == "duration_ms":
            parts.append(f"{label}={value}")
    return one_line(" ".join(parts))
