"""Field types for the REST bodies that go into the database.

Python's JSON parser accepts things no database column can hold: unpaired UTF-16
surrogates in strings, NaN and Infinity in numbers, integers of any size. Each would
be a 500 at insert time; these types make them a 400 naming the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

#: Postgres INTEGER.
MAX_INT = 2_147_483_647


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an unpaired surrogate (not valid Unicode text)") from None
    return value


def _finite_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and Infinity are not JSON")
    if isinstance(value, str):
        _encodable(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _finite_json(key)
            _finite_json(item)
    elif isinstance(value, list):
        for item in value:
            _finite_json(item)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        raise ValueError("integers beyond 2**53 are not portable JSON")
    return value


Text = Annotated[str, AfterValidator(_encodable)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_finite_json)]
Count = Annotated[int, Field(ge=1, le=MAX_INT)]
