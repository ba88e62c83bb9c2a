"""The FastAPI routes' JSON response, written by orjson."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class ORJSONResponse(JSONResponse):
    # A JSONResponse, so the OpenAPI document describes bodies as JSON values (for a
    # plain Response, FastAPI documents every 200 as a string).
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
