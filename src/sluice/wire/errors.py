"""OpenAI-shaped error bodies (``{"error": {"message", "type", "param", "code"}}``), and
a failure's in-band stream record, to and from the exception tree.

Two fields ride along that the SDKs ignore: ``hint`` (what the operator can do about an
upstream failure, ``sluice.errors.recommendation``) and ``request_id`` (the id of the
HTTP request that gets the body, which the edge passes in: a codec knows no requests).
"""

from __future__ import annotations

import orjson

from sluice import errors
from sluice.errors import SluiceError
from sluice.events import StreamError

#: The exception tree by class name: what a stream's error record may stand for.
_CLASSES: dict[str, type[SluiceError]] = {
    name: cls
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, SluiceError)
}


def error_object(
    message: str,
    type: str,
    param: str | None = None,
    code: str | None = None,
    *,
    hint: str | None = None,
    request_id: str | None = None,
) -> dict[str, dict[str, str | None]]:
    error: dict[str, str | None] = {"message": message, "type": type, "param": param, "code": code}
    # Only when there is one: bodies without them stay exactly OpenAI's.
    if hint is not None:
        error["hint"] = hint
    if request_id is not None:
        error["request_id"] = request_id
    return {"error": error}


def error_body(exc: SluiceError, request_id: str | None = None) -> bytes:
    return orjson.dumps(
        error_object(
            exc.message, exc.type, exc.param, exc.code, hint=exc.hint, request_id=request_id
        )
    )


def stream_error_object(
    error: StreamError, request_id: str | None = None
) -> dict[str, dict[str, str | None]]:
    return error_object(
        error.message, error.type, None, error.code, hint=error.hint, request_id=request_id
    )


def stream_error_body(error: StreamError, request_id: str | None = None) -> bytes:
    return orjson.dumps(stream_error_object(error, request_id))


def stream_error_from(exc: SluiceError) -> StreamError:
    """The in-band record of a failure (it crosses instances through the shared log)."""
    return StreamError(
        type=exc.type,
        message=exc.message,
        code=exc.code,
        status=exc.status,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
        param=exc.param,
        exception=_tree_class(exc),
        hint=exc.hint,
    )


def _tree_class(exc: SluiceError) -> str:
    # The nearest class of the tree (a subclass made elsewhere is named by its parent).
    return next(c.__name__ for c in type(exc).__mro__ if _CLASSES.get(c.__name__) is c)


def error_from_stream(error: StreamError) -> SluiceError:
    """The exception a stream's error record stands for, class and fields, for callers
    in the same program (``Sluice`` raises it). A record naming no class of the tree (an
    internal failure, or one written by an older version) is a plain ``SluiceError``."""
    cls = _CLASSES.get(error.exception or "", SluiceError)
    exc = cls(
        error.message,
        param=error.param,
        code=error.code,
        status=error.status,
        retry_after=error.retry_after,
        hint=error.hint,
    )
    # Instance values only where the record differs from what the class says.
    if exc.type != error.type:
        exc.type = error.type
    if exc.retryable != error.retryable:
        exc.retryable = error.retryable
    return exc
