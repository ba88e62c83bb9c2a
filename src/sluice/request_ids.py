"""The request id: one per HTTP request or WebSocket, in its response's ``x-request-id``
header, on the upstream call it causes, in its error bodies and in every log line
written while handling it.

The id lives in a ``ContextVar`` set once at the HTTP boundary (``http/boundary.py``).
uvicorn runs each request in its own task, and a task copies the context it was created
in, so everything started while handling a request — the ``Generation``'s task, the
saver — carries that request's id with no argument passed down through the layers.

A client's own id is kept when it is well-formed, so a trace can follow a request
through several services; anything else is replaced, never echoed: a header value goes
back into our response headers and into log lines, and must not be able to split
either.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar

from sluice.redact import scrub

HEADER = b"x-request-id"
#: A client's id is kept only if it looks like this: printable, no spaces, nothing a
#: log line or a header could be split with.
_WELL_FORMED = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

_CURRENT: ContextVar[str | None] = ContextVar("sluice_request_id", default=None)


def new_request_id() -> str:
    # 96 random bits: unique without coordination between instances and workers.
    return "req_" + os.urandom(12).hex()


def well_formed(value: bytes) -> bool:
    return _WELL_FORMED.fullmatch(value) is not None


def request_id_for(sent: bytes | None) -> str:
    """The id of a request whose client sent ``sent`` (None: no ``x-request-id``)."""
    if sent is not None and well_formed(sent):
        text = sent.decode("ascii")
        # Shaped like a secret (an `sk-…` key pasted into the wrong header)? Then it
        # must not reach the logs, which redact messages but not this tag.
        if scrub(text) == text:
            return text
    return new_request_id()


def bind(request_id: str) -> None:
    """The id of the request being handled in this context (and in every task it starts)."""
    _CURRENT.set(request_id)


def current_request_id() -> str | None:
    return _CURRENT.get()


class RequestIdFilter(logging.Filter):
    """On every handler: the request id of the record's context as ``request_id``
    (None outside a request) and ``request_tag`` (`` request_id=…`` or empty, for
    text formats). A record that already names one (``extra=``) keeps it."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = getattr(record, "request_id", None) or _CURRENT.get()
        record.request_id = request_id
        record.request_tag = f" request_id={request_id}" if request_id else ""
        return True


__all__ = [
    "HEADER",
    "RequestIdFilter",
    "bind",
    "current_request_id",
    "new_request_id",
    "request_id_for",
    "well_formed",
]
