"""The gateway's HTTP edge. ``sluice.http:create_app`` is the application factory that
uvicorn, gunicorn's UvicornWorker, granian and ``sluice serve`` all run.

The factory is looked up lazily: modules of this package that need none of the server
(the sim's HTTP server, the CLI's clients) do not import the whole gateway with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sluice.http.server import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from sluice.http.server import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
