"""Values that fit a JSON schema: the simulated model's structured outputs.

``check(schema, strict=...)`` refuses a schema no value can fit, or that the simulator
cannot follow (a ``$ref`` that points nowhere, ``minimum`` above ``maximum`` …), and with
``strict`` what OpenAI's strict mode refuses (an object without
``additionalProperties: false``, a property left out of ``required``). ``build(schema,
rng, words)`` makes a value that fits it, every choice drawn from ``rng``: the same
generator state gives the same value. Pure: no I/O, no shared state.

Followed: ``type`` (one or a list), ``enum``, ``const``, ``properties``/``required``,
``additionalProperties``, ``min``/``maxProperties``, ``items``/``prefixItems``,
``min``/``maxItems``, ``uniqueItems`` (best effort), ``min``/``maxLength``, ``format``
(date-time, date, time, email, uri, uuid, ipv4, hostname), ``minimum``/``maximum`` and
their exclusive forms, ``multipleOf``, ``anyOf``/``oneOf``/``allOf``, and local ``$ref``
(``#/$defs/…`` as pydantic writes it, ``#/definitions/…``, ``#``), recursion included.
Not followed: ``pattern``, ``not``, ``if``/``then``/``else``, ``patternProperties``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

#: What one answer may hold: a bound on the work a hostile schema can ask for (the
#: in-process simulator shares the gateway's event loop).
MAX_VALUES = 2000
#: Nesting of the value built; past ``FRUGAL_DEPTH`` only what is required is built, so
#: a recursive schema (a tree of nodes) ends.
MAX_DEPTH = 48
FRUGAL_DEPTH = 6
MAX_ITEMS = 500
MAX_STRING = 4096
#: Integers stay where every JSON reader holds them exactly (JavaScript's safe range).
MAX_SAFE_INTEGER = 2**53 - 1
_REF_HOPS = 64

TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_COUNTS = (
    ("minItems", "maxItems"),
    ("minLength", "maxLength"),
    ("minProperties", "maxProperties"),
)

#: Words for strings when the prompt offers none.
WORDS = (
    "river",
    "harbor",
    "lantern",
    "meadow",
    "signal",
    "orbit",
    "cedar",
    "summit",
    "ledger",
    "beacon",
    "canyon",
    "atlas",
    "willow",
    "quartz",
    "ember",
    "delta",
)


class SchemaError(ValueError):
    """A schema no value fits, or that asks for more than an answer may hold."""

    def __init__(self, problem: str, path: Sequence[str | int] = ()) -> None:
        where = "/".join(str(part) for part in path)
        super().__init__(f"{problem} (at {where})" if where else problem)
        self.problem = problem
        self.path = tuple(path)


# --- checking ---------------------------------------------------------------------------


def check(schema: Any, *, strict: bool = False) -> None:
    """Raise SchemaError for what ``build`` could not fit, or strict mode refuses."""
    if not isinstance(schema, dict):
        raise SchemaError("the schema must be an object")
    if strict and _types(_resolve(schema, schema, ())) != ["object"]:
        raise SchemaError("the root of a strict schema must be of type 'object'")
    for node, path in _nodes(schema, ()):
        _check_node(schema, node, path, strict)


def _nodes(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[Any, tuple[str | int, ...]]]:
    """Every subschema in the tree (``$ref`` targets are in it too: they are local)."""
    yield node, path
    if not isinstance(node, dict):
        return
    for key in _SUBSCHEMA_MAPS:
        children = node.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                yield from _nodes(child, (*path, key, name))
    for key in _SUBSCHEMA_LISTS:
        children = node.get(key)
        if isinstance(children, list):
            for position, child in enumerate(children):
                yield from _nodes(child, (*path, key, position))
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from _nodes(node[key], (*path, key))


def _check_node(root: dict[str, Any], node: Any, path: tuple[str | int, ...], strict: bool) -> None:
    if isinstance(node, bool):
        return  # true fits anything; false is refused where a value is needed
    if not isinstance(node, dict):
        raise SchemaError("a schema must be an object or a boolean", path)
    if "$ref" in node:
        _resolve(root, node, path)
    for key in _SUBSCHEMA_MAPS:
        if key in node and not isinstance(node[key], dict):
            raise SchemaError(f"'{key}' must be an object", path)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node and (not isinstance(node[key], list) or not node[key]):
            raise SchemaError(f"'{key}' must be a non-empty array", path)
    if "type" in node:
        kinds = node["type"]
        listed = kinds if isinstance(kinds, list) else [kinds]
        if not listed or any(not isinstance(k, str) or k not in TYPES for k in listed):
            raise SchemaError(f"unknown type {kinds!r}", path)
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        raise SchemaError("'enum' must be a non-empty array", path)
    if "required" in node and (
        not isinstance(node["required"], list)
        or any(not isinstance(name, str) for name in node["required"])
    ):
        raise SchemaError("'required' must be an array of property names", path)
    for low, high in _COUNTS:
        least, most = _count(node, low, path), _count(node, high, path)
        if least is not None and most is not None and least > most:
            raise SchemaError(f"'{low}' is above '{high}'", path)
    if (_count(node, "minItems", path) or 0) > MAX_ITEMS:
        raise SchemaError(f"'minItems' above {MAX_ITEMS} is more than an answer may hold", path)
    if (_count(node, "minLength", path) or 0) > MAX_STRING:
        raise SchemaError(f"'minLength' above {MAX_STRING} is more than an answer may hold", path)
    kinds = _types(node)
    if "integer" in kinds:
        _integer_range(node, path)
    if "number" in kinds:
        _number_range(node, path)
    if strict and kinds == ["object"]:
        if node.get("additionalProperties") is not False:
            raise SchemaError("'additionalProperties' must be false in strict mode", path)
        properties = node.get("properties") or {}
        missing = [name for name in properties if name not in (node.get("required") or ())]
        if missing:
            raise SchemaError(
                f"strict mode requires every property in 'required'; missing {missing[0]!r}",
                path,
            )


def _count(node: dict[str, Any], key: str, path: tuple[str | int, ...]) -> int | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(f"'{key}' must be a non-negative integer", path)
    return value


def _bound(node: dict[str, Any], key: str, path: tuple[str | int, ...]) -> float | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(f"'{key}' must be a number", path)
    return value


def _limits(
    node: dict[str, Any], path: tuple[str | int, ...]
) -> tuple[float | None, bool, float | None, bool]:
    """(low, low exclusive, high, high exclusive), in both drafts' spellings."""
    low, high = _bound(node, "minimum", path), _bound(node, "maximum", path)
    low_open = high_open = False
    exclusive_low, exclusive_high = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if isinstance(exclusive_low, bool) or isinstance(exclusive_high, bool):
        # Draft 4: booleans beside the bounds.
        low_open, high_open = exclusive_low is True, exclusive_high is True
    else:
        strict_low = _bound(node, "exclusiveMinimum", path)
        strict_high = _bound(node, "exclusiveMaximum", path)
        if strict_low is not None and (low is None or strict_low >= low):
            low, low_open = strict_low, True
        if strict_high is not None and (high is None or strict_high <= high):
            high, high_open = strict_high, True
    return low, low_open, high, high_open


def _multiple(node: dict[str, Any], path: tuple[str | int, ...]) -> float | None:
    step = _bound(node, "multipleOf", path)
    if step is not None and step <= 0:
        raise SchemaError("'multipleOf' must be above 0", path)
    return step


def _integer_range(node: dict[str, Any], path: tuple[str | int, ...]) -> tuple[int, int, int]:
    """(first, last, step): the integers that fit are first, first+step, … last."""
    low, low_open, high, high_open = _limits(node, path)
    first = (
        -MAX_SAFE_INTEGER if low is None else math.floor(low) + 1 if low_open else math.ceil(low)
    )
    last = (
        MAX_SAFE_INTEGER if high is None else math.ceil(high) - 1 if high_open else math.floor(high)
    )
    first, last = max(first, -MAX_SAFE_INTEGER), min(last, MAX_SAFE_INTEGER)
    step = _multiple(node, path)
    if step is None:
        whole = 1
    elif step == int(step):
        whole = int(step)
    else:
        raise SchemaError("an integer's 'multipleOf' must be a whole number", path)
    first = -(-first // whole) * whole
    last = last // whole * whole
    if first > last:
        raise SchemaError("no integer fits the bounds", path)
    return first, last, whole


def _number_range(node: dict[str, Any], path: tuple[str | int, ...]) -> tuple[float, float]:
    low, low_open, high, high_open = _limits(node, path)
    if (
        low is not None
        and high is not None
        and (low > high or (low == high and (low_open or high_open)))
    ):
        raise SchemaError("no number fits the bounds", path)
    step = _multiple(node, path)
    if step is not None and low is not None and high is not None:
        first, last = math.ceil(low / step), math.floor(high / step)
        if first > last:
            raise SchemaError("no multiple of 'multipleOf' fits the bounds", path)
    return (low if low is not None else -1e15), (high if high is not None else 1e15)


def _types(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    kinds = node.get("type")
    if isinstance(kinds, str):
        return [kinds]
    if isinstance(kinds, list):
        return [k for k in kinds if isinstance(k, str)]
    if "properties" in node or "additionalProperties" in node:
        return ["object"]
    if "items" in node or "prefixItems" in node:
        return ["array"]
    return []


def _resolve(
    root: dict[str, Any], node: dict[str, Any], path: tuple[str | int, ...]
) -> dict[str, Any]:
    """``node`` with its ``$ref`` chain followed; keywords beside a ``$ref`` (pydantic puts
    a description there) are kept."""
    hops = 0
    while "$ref" in node:
        hops += 1
        if hops > _REF_HOPS:
            raise SchemaError("a '$ref' chain that never ends", path)
        ref = node["$ref"]
        if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
            raise SchemaError(f"only local references ('#/…') are followed, not {ref!r}", path)
        target: Any = root
        for token in ref[2:].split("/") if ref != "#" else ():
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
                target = target[int(token)]
            else:
                raise SchemaError(f"'$ref' {ref!r} points nowhere", path)
        if target is True:
            target = {}
        if not isinstance(target, dict):
            raise SchemaError(f"'$ref' {ref!r} does not point to a schema", path)
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        node = {**target, **siblings} if siblings else target
    return node


# --- building ---------------------------------------------------------------------------


def build(schema: dict[str, Any], rng: random.Random, words: Sequence[str] = ()) -> Any:
    """A value that fits ``schema`` (``check`` it first), every choice drawn from ``rng``;
    strings are made of ``words`` (the prompt's, say) and a few of the simulator's own."""
    return _Builder(schema, rng, [*words, *WORDS]).value(schema, 0, "", ())


_Maker = Callable[["_Builder"], str]


class _Builder:
    def __init__(self, root: dict[str, Any], rng: random.Random, words: list[str]) -> None:
        self.root = root
        self.rng = rng
        self.words = words
        self.made = 0

    def frugal(self, depth: int) -> bool:
        return depth >= FRUGAL_DEPTH or self.made > MAX_VALUES // 2

    def value(self, node: Any, depth: int, name: str, path: tuple[str | int, ...]) -> Any:
        self.made += 1
        if self.made > MAX_VALUES:
            raise SchemaError(f"the schema asks for more than {MAX_VALUES} values", path)
        if depth > MAX_DEPTH:
            raise SchemaError(f"the schema asks for values nested deeper than {MAX_DEPTH}", path)
        if node is True:
            node = {}
        if not isinstance(node, dict):
            raise SchemaError("no value fits a false schema", path)
        node = _resolve(self.root, node, path)
        if "allOf" in node:
            node = self._merged(node, path)
        if "const" in node:
            return node["const"]
        if "enum" in node:
            return self.rng.choice(node["enum"])
        for key in ("anyOf", "oneOf"):
            if key in node:
                branch = self._branch(node[key], depth, path)
                rest = {k: v for k, v in node.items() if k != key}
                chosen = _resolve(self.root, branch, path) if isinstance(branch, dict) else {}
                # A level of its own, so a cycle of bare anyOf references ends too.
                return self.value({**rest, **chosen}, depth + 1, name, (*path, key))
        kinds = _types(node)
        if not kinds:
            kind = "string"
        elif "null" in kinds and self.frugal(depth):
            kind = "null"
        else:
            kind = self.rng.choice(kinds)
        if kind == "object":
            return self._object(node, depth, path)
        if kind == "array":
            return self._array(node, depth, name, path)
        if kind == "integer":
            first, last, step = _integer_range(node, path)
            # Around zero to a hundred, as a model would answer, where the bounds allow.
            low = max(first, min(0, last - 100 * step))
            high = min(last, max(low + 100 * step, first))
            return self.rng.randint(low // step, high // step) * step
        if kind == "number":
            return self._number(node, path)
        if kind == "boolean":
            return self.rng.random() < 0.5
        if kind == "null":
            return None
        return self._string(node, name)

    def _branch(self, branches: list[Any], depth: int, path: tuple[str | int, ...]) -> Any:
        if self.frugal(depth):
            # Deep in a recursive schema: end it (null, or any branch that is no object).
            for branch in branches:
                if "null" in _types(branch):
                    return branch
            for branch in branches:
                if (
                    isinstance(branch, dict)
                    and "$ref" not in branch
                    and _types(branch) != ["object"]
                ):
                    return branch
            return branches[0]
        return self.rng.choice(branches)

    def _merged(self, node: dict[str, Any], path: tuple[str | int, ...]) -> dict[str, Any]:
        merged = {k: v for k, v in node.items() if k != "allOf"}
        for part in node["allOf"]:
            part = _resolve(self.root, part, path) if isinstance(part, dict) else {}
            for key, value in part.items():
                if key == "properties" and isinstance(value, dict):
                    merged["properties"] = {**(merged.get("properties") or {}), **value}
                elif key == "required" and isinstance(value, list):
                    merged["required"] = [*(merged.get("required") or []), *value]
                else:
                    merged.setdefault(key, value)
        return merged

    def _object(self, node: dict[str, Any], depth: int, path: tuple[str | int, ...]) -> Any:
        properties = node.get("properties") or {}
        required = node.get("required") or ()
        frugal = self.frugal(depth)
        least = node.get("minProperties") or 0
        out: dict[str, Any] = {}
        for name, child in properties.items():
            if name in required or (not frugal and self.rng.random() < 0.7) or len(out) < least:
                out[name] = self.value(child, depth + 1, name, (*path, "properties", name))
        for name in required:
            if name not in out:
                out[name] = self.value({}, depth + 1, name, (*path, "required"))
        extra = node.get("additionalProperties", True)
        if extra is not False and not properties:
            wanted = max(least, 0 if frugal else self.rng.randint(1, 3))
            most = node.get("maxProperties")
            wanted = min(wanted, most) if most is not None else wanted
            for position in range(wanted):
                key = f"{self.rng.choice(self.words)}_{position + 1}"
                out[key] = self.value(extra, depth + 1, key, (*path, "additionalProperties"))
        return out

    def _array(
        self, node: dict[str, Any], depth: int, name: str, path: tuple[str | int, ...]
    ) -> Any:
        least = node.get("minItems") or 0
        most = node.get("maxItems")
        prefix = node.get("prefixItems") or []
        items = node.get("items", True)
        if isinstance(items, list):  # draft 4's tuple form
            prefix, items = items, node.get("additionalItems", True)
        if self.frugal(depth):
            count = least
        else:
            top = max(least, 1) + 2
            count = self.rng.randint(max(least, 1), top)
        if most is not None:
            count = min(count, most)
        if items is False:
            count = min(count, len(prefix))
        out: list[Any] = []
        unique = node.get("uniqueItems") is True
        for position in range(count):
            child = prefix[position] if position < len(prefix) else items
            where = (*path, "prefixItems" if position < len(prefix) else "items", position)
            if unique:
                child = self._unused(child, out, where)
            value = self.value(child, depth + 1, name, where)
            # Best effort beyond enums: a few more draws for a duplicate.
            for _ in range(8 if unique else 0):
                if value not in out:
                    break
                value = self.value(child, depth + 1, name, where)
            out.append(value)
        return out

    def _unused(self, child: Any, taken: list[Any], path: tuple[str | int, ...]) -> Any:
        """``child`` without the enum values already taken, while any are left."""
        if not isinstance(child, dict):
            return child
        resolved = _resolve(self.root, child, path)
        choices = resolved.get("enum")
        if not isinstance(choices, list):
            return child
        left = [value for value in choices if value not in taken]
        return {**resolved, "enum": left} if left else child

    def _number(self, node: dict[str, Any], path: tuple[str | int, ...]) -> float:
        low, low_open, high, high_open = _limits(node, path)
        first, last = _number_range(node, path)
        if low is None and high is None:
            first, last = 0.0, 100.0
        elif low is None:
            first = last - 100
        elif high is None:
            last = first + 100
        step = _multiple(node, path)
        if step is not None:
            lowest, highest = math.ceil(first / step), math.floor(last / step)
            candidates = [
                k for k in (lowest, lowest + 1, highest - 1, highest) if lowest <= k <= highest
            ]
            k = self.rng.randint(lowest, highest) if highest - lowest < 10**6 else candidates[0]
            # Printed short: 3 * 0.1 is 0.30000000000000004, which no reader calls 0.3.
            value = float(f"{k * step:.12g}")
            if (low_open and value <= first) or (high_open and value >= last):
                value = next((c * step for c in candidates if first < c * step < last), value)
            return value
        value = round(self.rng.uniform(first, last), 2)
        if (
            value < first
            or value > last
            or (low_open and value <= first)
            or (high_open and value >= last)
        ):
            value = (first + last) / 2
        return value

    def _string(self, node: dict[str, Any], name: str) -> str:
        made = _FORMATS.get(node.get("format") or "")
        text = made(self) if made is not None else self._text(name)
        least = node.get("minLength") or 0
        most = node.get("maxLength")
        while len(text) < least:
            text += " " + self.rng.choice(self.words)
        if most is not None and len(text) > most:
            text = text[:most]
        if len(text) < least:
            text += "x" * (least - len(text))
        return text

    def _text(self, name: str) -> str:
        key = name.lower()
        if key.endswith(("email", "mail")):
            return _email(self)
        if key.endswith(("url", "uri", "link", "website")):
            return _uri(self)
        pick = self.rng.choice
        if key.endswith(("name", "title", "city", "country", "label", "author")):
            return " ".join(pick(self.words).capitalize() for _ in range(self.rng.randint(1, 2)))
        if key.endswith(
            (
                "description",
                "summary",
                "text",
                "content",
                "answer",
                "reason",
                "explanation",
                "message",
                "comment",
                "notes",
            )
        ):
            words = [pick(self.words) for _ in range(self.rng.randint(6, 14))]
            return " ".join(words).capitalize() + "."
        return " ".join(pick(self.words) for _ in range(self.rng.randint(1, 3)))


def _email(b: _Builder) -> str:
    return f"{b.rng.choice(WORDS)}.{b.rng.choice(WORDS)}@example.com"


def _uri(b: _Builder) -> str:
    return f"https://example.com/{b.rng.choice(WORDS)}/{b.rng.randint(1, 999)}"


def _date(b: _Builder) -> str:
    return f"{b.rng.randint(2015, 2030):04d}-{b.rng.randint(1, 12):02d}-{b.rng.randint(1, 28):02d}"


def _time(b: _Builder) -> str:
    return f"{b.rng.randint(0, 23):02d}:{b.rng.randint(0, 59):02d}:{b.rng.randint(0, 59):02d}"


_FORMATS: dict[str, _Maker] = {
    "date-time": lambda b: f"{_date(b)}T{_time(b)}Z",
    "date": _date,
    "time": _time,
    "email": _email,
    "uri": _uri,
    "url": _uri,
    "uuid": lambda b: str(uuid.UUID(int=b.rng.getrandbits(128), version=4)),
    "ipv4": lambda b: f"192.0.2.{b.rng.randint(1, 254)}",
    "hostname": lambda b: f"{b.rng.choice(WORDS)}.example.com",
}
