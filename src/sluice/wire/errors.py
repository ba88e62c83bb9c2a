"""OpenAI-shaped error bodies (``{"error": {"message", "type", "param", "code"}}``), and
a failure's in-band stream record, to and from the exception tree."""

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
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_body(exc: SluiceError) -> bytes:
    return orjson.dumps(error_object(exc.message, exc.type, exc.param, exc.code))


def stream_error_body(error: StreamError) -> bytes:
    return orjson.dumps(error_object(error.message, error.type, None, error.code))


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
    )
    # Instance values only where the record differs from what the class says.
    if exc.type != error.type:
        exc.type = error.type
    if exc.retryable != error.retryable:
        exc.retryable = error.retryable
    return exc
