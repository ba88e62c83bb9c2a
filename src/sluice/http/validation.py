"""Field types for the REST bodies that go into the database.

Python's JSON parser accepts things no database column can hold: NUL characters and
unpaired UTF-16 surrogates in strings, NaN and Infinity in numbers, integers of any size,
objects nested deeper than orjson will ever write back. Each would be a 500 at insert
time or, worse, at every later read; these types make them a 400 naming the field (the
checks themselves are ``sluice.wire.storable``, shared with the chat turn's parser).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from pydantic import AfterValidator, Field

from sluice.errors import RequestError
from sluice.http.asgi import Scope
from sluice.wire.storable import check_text, storable_json

#: Postgres INTEGER.
MAX_INT = 2_147_483_647
#: Model names one key may be limited to.
MAX_MODEL_NAMES = 256

Text = Annotated[str, AfterValidator(check_text)]
#: Nesting, size (``max_json_bytes``) and every string and number checked.
JsonObject = Annotated[dict[str, Any], AfterValidator(storable_json)]
Count = Annotated[int, Field(ge=1, le=MAX_INT)]
ModelName = Annotated[Text, Field(min_length=1, max_length=200)]
ModelNames = Annotated[list[ModelName], Field(max_length=MAX_MODEL_NAMES)]


def nul_in_target(scope: Scope) -> RequestError | None:
    """A 400 for a request whose path or query holds a NUL: ids and search terms go
    into database lookups, and PostgreSQL refuses NUL even in a WHERE clause. (Broken
    UTF-8 is no such risk: the server decodes it to U+FFFD.)"""
    if "\x00" in scope["path"]:
        return RequestError("The request path contains a NUL character.", param="path")
    if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
        return RequestError("The query string contains a NUL character.", param="query")
    return None
