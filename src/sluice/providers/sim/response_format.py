"""A request's ``response_format``, as the simulated model reads it: plain text, any JSON
object (``json_object``) or JSON that fits a schema (``json_schema``).

``structured_output(body)`` refuses a malformed one with a RequestError worded as
OpenAI words it, so a client learns of its mistake from the simulator as it would from
the real API; ``answer(fmt, prompt, seed)`` is the JSON text of one answer.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

import orjson

from sluice.errors import RequestError
from sluice.providers.sim import structured
from sluice.providers.sim.vocabulary import STOPWORDS

_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_PROMPT_WORD = re.compile(r"[^\W\d_]{3,24}")
#: Words taken from the prompt for strings; the scan stops early on a pasted megabyte.
_PROMPT_WORDS = 12
_PROMPT_SCAN = 4096

#: What a ``json_object`` answer looks like: the model picks its own keys.
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "summary": {"type": "string"},
        "points": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 4},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["topic", "summary", "points", "confidence"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class StructuredOutput:
    """What the answer must be: JSON fitting ``schema``."""

    name: str
    schema: dict[str, Any]
    strict: bool = False


JSON_OBJECT = StructuredOutput("json_object", JSON_OBJECT_SCHEMA)


def structured_output(body: dict[str, Any]) -> StructuredOutput | None:
    """The structured output ``body`` asks for (None: text), or a RequestError (400)."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    where = "response_format"
    if not isinstance(fmt, dict):
        raise _invalid_type(where, "an object", fmt)
    kind = fmt.get("type")
    if kind is None:
        raise _missing(f"{where}.type")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT
    if kind != "json_schema":
        raise RequestError(
            f"Invalid value: {_shown(kind)}. Supported values are: 'json_object', "
            "'json_schema', and 'text'.",
            param=f"{where}.type",
        )
    spec = fmt.get("json_schema")
    where = f"{where}.json_schema"
    if spec is None:
        raise _missing(where)
    if not isinstance(spec, dict):
        raise _invalid_type(where, "an object", spec)
    name = spec.get("name")
    if name is None:
        raise _missing(f"{where}.name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RequestError(
            f"Invalid '{where}.name': expected a string of at most 64 letters, digits, "
            "underscores or dashes.",
            param=f"{where}.name",
        )
    schema = spec.get("schema")
    if schema is None:
        raise _missing(f"{where}.schema")
    if not isinstance(schema, dict):
        raise _invalid_type(f"{where}.schema", "an object", schema)
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise _invalid_type(f"{where}.strict", "a boolean", strict)
    output = StructuredOutput(name, schema, bool(strict))
    try:
        structured.check(schema, strict=output.strict)
        # What the check cannot see (a schema asking for too much) shows in a trial.
        structured.build(schema, random.Random(0))
    except structured.SchemaError as exc:
        raise RequestError(
            f"Invalid schema for response_format '{name}': {exc}", param="response_format"
        ) from None
    return output


def answer(output: StructuredOutput, prompt: str, seed: int | None) -> str:
    """The JSON text of an answer that fits ``output``: the same for the same prompt
    and seed. Raises RequestError if the schema asks for more than an answer may hold."""
    key = f"{output.name}\0{seed!r}\0{prompt[:_PROMPT_SCAN]}".encode("utf-8", "surrogatepass")
    rng = random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))
    try:
        value = structured.build(output.schema, rng, _words(prompt))
    except structured.SchemaError as exc:
        raise RequestError(
            f"Invalid schema for response_format '{output.name}': {exc}", param="response_format"
        ) from None
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        # An enum or const beyond 64 bits, which orjson will not write.
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _words(prompt: str) -> list[str]:
    words: list[str] = []
    for word in _PROMPT_WORD.findall(prompt[:_PROMPT_SCAN]):
        lowered = word.lower()
        if lowered not in STOPWORDS and lowered not in words:
            words.append(lowered)
            if len(words) == _PROMPT_WORDS:
                break
    return words


def _missing(param: str) -> RequestError:
    return RequestError(f"Missing required parameter: '{param}'.", param=param)


def _invalid_type(param: str, expected: str, value: Any) -> RequestError:
    return RequestError(
        f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.",
        param=param,
    )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else "an object"


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) and len(value) <= 40 else "that value"
