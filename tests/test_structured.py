"""The simulated model's structured outputs: values that fit JSON schemas (pydantic's and
hand-written ones), refused schemas and response formats, and how answers vary."""

from __future__ import annotations

import datetime
import enum
import json
import random
import re
import uuid
from typing import Any, Literal

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, Field

from sluice.errors import RequestError
from sluice.events import ResponseMeta, RoleStart, TextDelta, ToolCallDelta
from sluice.providers.sim import SimOptions, SimProvider
from sluice.providers.sim.response_format import StructuredOutput, answer, structured_output
from sluice.providers.sim.script import SYSTEM_FINGERPRINT, build_script, draw_seed
from sluice.providers.sim.structured import MAX_VALUES, SchemaError, build, check
from sluice.wire.openai_request import chat_request_from_body

# --- pydantic models, as `client.chat.completions.parse(response_format=Model)` sends them


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None


class Pet(BaseModel):
    kind: Literal["cat", "dog", "bird"]
    age: int = Field(ge=0, le=30)
    weight: float = Field(gt=0, lt=50)


class Node(BaseModel):
    """Recursive: the builder must end the tree."""

    label: str
    children: list[Node]


class Person(BaseModel):
    name: str
    email: str
    age: int = Field(ge=18, le=99)
    score: float = Field(ge=-1, le=1)
    home: Address
    previous: list[Address] = Field(max_length=2)
    pets: list[Pet] = Field(min_length=1, max_length=3)
    tags: list[str]
    colour: Colour
    active: bool
    nothing: None
    either: int | str
    tree: Node
    nickname: str = Field(min_length=3, max_length=8)


MODELS: list[type[BaseModel]] = [Person, Address, Pet, Node]


def request(schema: dict[str, Any], *, strict: bool = True, name: str = "Answer") -> dict[str, Any]:
    return {
        "model": "sim",
        "messages": [{"role": "user", "content": "Describe someone who lives in Kyoto"}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": strict},
        },
    }


@given(st.integers(0, 2**32))
@settings(max_examples=60)
def test_values_fit_strict_pydantic_schemas(seed: int) -> None:
    for model in MODELS:
        schema = to_strict_json_schema(model)
        check(schema, strict=True)
        value = build(schema, random.Random(seed), ["kyoto", "temple"])
        model.model_validate_json(orjson.dumps(value))
        # Strict mode: additionalProperties is false, so no key beyond the properties.
        assert set(value) == set(schema["properties"])


@given(st.integers(0, 2**32))
@settings(max_examples=60)
def test_values_fit_plain_pydantic_schemas_with_optional_fields(seed: int) -> None:
    class Loose(BaseModel):
        title: str
        note: str | None = None
        count: int = 3
        person: Person | None = None

    schema = Loose.model_json_schema()
    check(schema)
    Loose.model_validate_json(orjson.dumps(build(schema, random.Random(seed))))


def test_optional_fields_are_sometimes_left_out_and_sometimes_given() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
        "required": ["a"],
    }
    shapes = {tuple(sorted(build(schema, random.Random(seed)))) for seed in range(40)}
    assert shapes == {("a",), ("a", "b")}


# (schema, a predicate every built value must satisfy)
HAND_WRITTEN: list[tuple[dict[str, Any], Any]] = [
    ({"type": "integer", "minimum": 5, "maximum": 7}, lambda v: type(v) is int and 5 <= v <= 7),
    (
        {"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 8, "multipleOf": 2},
        lambda v: v == 6,
    ),
    ({"type": "integer", "minimum": 10**6}, lambda v: type(v) is int and v >= 10**6),
    ({"type": "integer", "maximum": -40}, lambda v: type(v) is int and v <= -40),
    (  # draft 4: booleans beside the bounds
        {"type": "number", "minimum": 0, "maximum": 1, "exclusiveMinimum": True},
        lambda v: 0 < v <= 1,
    ),
    (
        {"type": "number", "maximum": 3, "exclusiveMinimum": False, "exclusiveMaximum": True},
        lambda v: v < 3,
    ),
    ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.01}, lambda v: 0 < v < 0.01),
    (
        {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.1},
        lambda v: 0 <= v <= 1 and abs(v * 10 - round(v * 10)) < 1e-9 and len(repr(v)) <= 4,
    ),
    ({"type": "string", "minLength": 40, "maxLength": 45}, lambda v: 40 <= len(v) <= 45),
    ({"type": "string", "maxLength": 2}, lambda v: isinstance(v, str) and len(v) <= 2),
    (
        {"type": "string", "format": "date-time"},
        lambda v: datetime.datetime.fromisoformat(v.replace("Z", "+00:00")).tzinfo is not None,
    ),
    ({"type": "string", "format": "date"}, lambda v: bool(datetime.date.fromisoformat(v))),
    ({"type": "string", "format": "uuid"}, lambda v: uuid.UUID(v).version == 4),
    ({"type": "string", "format": "email"}, lambda v: re.fullmatch(r"[\w.]+@[\w.]+", v)),
    ({"type": "string", "format": "uri"}, lambda v: v.startswith("https://")),
    ({"enum": ["a", 1, None]}, lambda v: v in ("a", 1, None)),
    ({"const": {"fixed": [1, 2]}}, lambda v: v == {"fixed": [1, 2]}),
    ({"type": ["integer", "null"]}, lambda v: v is None or type(v) is int),
    ({"type": "null"}, lambda v: v is None),
    ({"type": "boolean"}, lambda v: isinstance(v, bool)),
    (
        {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
        lambda v: len(v) == 4 and all(type(i) is int for i in v),
    ),
    ({"type": "array", "maxItems": 0}, lambda v: v == []),
    (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
        lambda v: (
            len(v) <= 2 and all(isinstance(x, t) for x, t in zip(v, (str, bool), strict=False))
        ),
    ),
    (
        {"type": "array", "items": {"enum": ["x", "y", "z"]}, "minItems": 3, "uniqueItems": True},
        lambda v: 3 <= len(v) <= 3 + 2 and sorted(v[:3]) == ["x", "y", "z"],
    ),
    (
        {"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 2},
        lambda v: len(v) >= 2 and all(type(x) is int for x in v.values()),
    ),
    (
        {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "either"},
        lambda v: isinstance(v, str | int),
    ),
    (
        {
            "allOf": [{"$ref": "#/$defs/A"}, {"properties": {"b": {"type": "boolean"}}}],
            "required": ["b"],
            "$defs": {
                "A": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
            },
        },
        lambda v: type(v["a"]) is int and isinstance(v["b"], bool),
    ),
    (
        {"$ref": "#/definitions/Item", "definitions": {"Item": {"type": "string", "maxLength": 5}}},
        lambda v: isinstance(v, str) and len(v) <= 5,
    ),
    ({}, lambda v: isinstance(v, str)),
]


@pytest.mark.parametrize(("schema", "fits"), HAND_WRITTEN)
def test_hand_written_schemas(schema: dict[str, Any], fits: Any) -> None:
    check(schema)
    for seed in range(25):
        value = build(schema, random.Random(seed))
        assert fits(value), (schema, value)
        orjson.dumps(value)  # JSON all the way down


def test_a_recursive_schema_ends() -> None:
    tree = {
        "$defs": {
            "Tree": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "left": {"anyOf": [{"$ref": "#/$defs/Tree"}, {"type": "null"}]},
                    "right": {"anyOf": [{"$ref": "#/$defs/Tree"}, {"type": "null"}]},
                },
                "required": ["label", "left", "right"],
            }
        },
        "$ref": "#/$defs/Tree",
    }

    def depth(node: Any) -> int:
        return 0 if node is None else 1 + max(depth(node["left"]), depth(node["right"]))

    depths = {depth(build(tree, random.Random(seed))) for seed in range(30)}
    assert max(depths) <= 10 and len(depths) > 1


def test_the_same_generator_state_gives_the_same_value() -> None:
    schema = to_strict_json_schema(Person)
    assert build(schema, random.Random(9)) == build(schema, random.Random(9))
    assert build(schema, random.Random(9)) != build(schema, random.Random(10))


@pytest.mark.parametrize(
    ("schema", "strict", "problem"),
    [
        ("not a schema", False, "the schema must be an object"),
        ({"type": "text"}, False, "unknown type 'text'"),
        ({"$ref": "#/$defs/Missing"}, False, "points nowhere"),
        ({"$ref": "https://example.com/s.json"}, False, "only local references"),
        ({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}, False, "never ends"),
        ({"type": "integer", "minimum": 5, "maximum": 4}, False, "no integer fits"),
        ({"type": "integer", "minimum": 1, "maximum": 3, "multipleOf": 5}, False, "no integer"),
        ({"type": "number", "exclusiveMinimum": 1, "maximum": 1}, False, "no number fits"),
        ({"type": "string", "minLength": 5, "maxLength": 4}, False, "'minLength' is above"),
        ({"type": "array", "minItems": 10**6}, False, "more than an answer may hold"),
        ({"type": "array", "minItems": -1}, False, "non-negative integer"),
        ({"enum": []}, False, "'enum' must be a non-empty array"),
        ({"anyOf": "x"}, False, "'anyOf' must be a non-empty array"),
        ({"properties": {"a": 3}}, False, "an object or a boolean"),
        ({"type": "array"}, True, "root of a strict schema"),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            True,
            "'additionalProperties' must be false",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": [],
                "additionalProperties": False,
            },
            True,
            "missing 'a'",
        ),
    ],
)
def test_schemas_refused(schema: Any, strict: bool, problem: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(problem)):
        check(schema, strict=strict)


def test_a_schema_asking_for_too_much_is_refused_when_built() -> None:
    wide = {
        "type": "array",
        "minItems": 400,
        "items": {"type": "array", "minItems": 400, "items": {"type": "integer"}},
    }
    check(wide)
    with pytest.raises(SchemaError, match=f"more than {MAX_VALUES} values"):
        build(wide, random.Random(0))


# --- response_format, as the simulator reads it ----------------------------------------


@pytest.mark.parametrize(
    ("fmt", "param", "message"),
    [
        ("json", "response_format", "expected an object, but got a string"),
        ({}, "response_format.type", "Missing required parameter: 'response_format.type'."),
        ({"type": "xml"}, "response_format.type", "Invalid value: 'xml'. Supported values"),
        ({"type": "json_schema"}, "response_format.json_schema", "Missing required parameter"),
        (
            {"type": "json_schema", "json_schema": {"schema": {}}},
            "response_format.json_schema.name",
            "Missing required parameter",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "has space", "schema": {}}},
            "response_format.json_schema.name",
            "at most 64 letters",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "A"}},
            "response_format.json_schema.schema",
            "Missing required parameter",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "A", "schema": []}},
            "response_format.json_schema.schema",
            "expected an object, but got an array",
        ),
        (
            {"type": "json_schema", "json_schema": {"name": "A", "schema": {}, "strict": "yes"}},
            "response_format.json_schema.strict",
            "expected a boolean",
        ),
        (
            {
                "type": "json_schema",
                "json_schema": {"name": "A", "schema": {"type": "array"}, "strict": True},
            },
            "response_format",
            "Invalid schema for response_format 'A': the root of a strict",
        ),
    ],
)
def test_bad_response_formats_are_400(fmt: Any, param: str, message: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "response_format": fmt}
    with pytest.raises(RequestError) as caught:
        structured_output(body)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert message in caught.value.message
    # The provider refuses it before anything starts, through its validate hook.
    provider = SimProvider(SimOptions())
    with pytest.raises(RequestError):
        provider.validate(chat_request_from_body({"model": "sim", **body}))


def test_text_and_absent_formats_are_plain_answers() -> None:
    for body in ({}, {"response_format": {"type": "text"}}):
        assert structured_output(body) is None


def test_answers_are_json_that_varies_with_the_seed() -> None:
    output = structured_output(request(to_strict_json_schema(Person)))
    assert output is not None
    first = answer(output, "a person", 1)
    assert first == answer(output, "a person", 1)
    assert first != answer(output, "a person", 2)
    Person.model_validate_json(first)


def test_json_object_answers_are_objects() -> None:
    output = structured_output({"response_format": {"type": "json_object"}})
    assert output is not None
    for seed in range(10):
        value = json.loads(answer(output, "Summarise the water cycle", seed))
        assert isinstance(value, dict) and value


def test_a_huge_enum_value_is_still_written() -> None:
    # orjson writes at most 64-bit integers; an enum may hold a bigger one.
    output = StructuredOutput("Big", {"enum": [2**70]})
    assert json.loads(answer(output, "x", 1)) == 2**70


# --- the script: streamed JSON, seeds, tool calls -----------------------------------------


def text_of(body: dict[str, Any], seed: int | None = None) -> str:
    script = build_script(body, SimOptions(length=40), seed=seed)
    pieces = [e.text for step in script.steps for e in step if isinstance(e, TextDelta)]
    return "".join(pieces)


def test_structured_answers_stream_in_many_chunks() -> None:
    body = request(to_strict_json_schema(Person))
    script = build_script(body, SimOptions(length=5))
    pieces = [e.text for step in script.steps for e in step if isinstance(e, TextDelta)]
    assert len(pieces) > 20, "streamed in pieces, and not cut at the prose length"
    Person.model_validate_json("".join(pieces))
    assert script.steps[-1][0].reason == "stop"  # type: ignore[union-attr]


def test_max_tokens_cuts_structured_answers_like_a_model() -> None:
    body = {**request(to_strict_json_schema(Person)), "max_tokens": 5}
    script = build_script(body, SimOptions())
    assert script.usage.completion_tokens == 5
    assert script.steps[-1][0].reason == "length"  # type: ignore[union-attr]


def test_seeds_and_temperature_decide_whether_answers_vary() -> None:
    prompt = {"messages": [{"role": "user", "content": "Explain message queues"}]}
    seeded = {**prompt, "seed": 4}
    assert draw_seed(seeded) is None and draw_seed({**prompt, "temperature": 0}) is None
    assert text_of(seeded, draw_seed(seeded)) == text_of(seeded, draw_seed(seeded))
    assert text_of(seeded) != text_of({**prompt, "seed": 5})
    greedy = {**prompt, "temperature": 0}
    assert text_of(greedy, draw_seed(greedy)) == text_of(greedy, draw_seed(greedy))
    for free in (prompt, {**prompt, "temperature": 0.7}):
        answers = {text_of(free, draw_seed(free)) for _ in range(3)}
        assert len(answers) == 3, "an answer left free is drawn afresh"


def test_tool_calls_open_with_a_flag_and_fresh_ids() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    body = {"messages": [{"role": "user", "content": "Weather?"}], "tools": [tool], "n": 2}
    ids = set()
    for _ in range(20):
        script = build_script({**body, "seed": 1, "tool_choice": "required"}, SimOptions())
        opening = script.steps[0]
        assert opening[0] == ResponseMeta(SYSTEM_FINGERPRINT, "default")
        assert opening[1:] == [RoleStart(0, tool_call=True), RoleStart(1, tool_call=True)]
        firsts = [e for step in script.steps for e in step if isinstance(e, ToolCallDelta) and e.id]
        ids |= {e.id for e in firsts}
    assert len(ids) == 40
    assert all(re.fullmatch(r"call_[A-Za-z0-9]{24}", i) for i in ids if i)
    plain = build_script({"messages": body["messages"]}, SimOptions())
    assert plain.steps[0][1] == RoleStart(0, tool_call=False)


def test_the_service_tier_asked_for_is_reported() -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    for asked, served in (("flex", "flex"), ("auto", "default"), (None, "default")):
        script = build_script({**body, "service_tier": asked}, SimOptions())
        assert script.steps[0][0] == ResponseMeta(SYSTEM_FINGERPRINT, served)
