"""Against a running gateway, with the official `openai` SDK where a client would use it:
structured outputs from the simulated model (`parse()` with a pydantic model, streamed
and not), how answers vary with the seed, fresh tool-call ids, a tool call opening with
`content: null`, `system_fingerprint` and `service_tier` passed through (replay from
Redis included), and OpenAI's message for a route that does not exist."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import aiohttp
import openai
import pytest
import redis.asyncio as redis
from openai import OpenAI
from pydantic import BaseModel, Field

from sluice.events import Event, Finish, ResponseMeta, RoleStart, ToolCallDelta, Usage
from sluice.providers.sim.script import SYSTEM_FINGERPRINT
from sluice.store.shared_log import RedisEventLogs, StreamMeta
from sluice.wire.events_json import event_from_dict, event_to_dict
from sluice.wire.openai_chunks import ChunkEncoder
from sluice.wire.sse import SSEDecoder
from tests.faults import new_key
from tests.servers import ServerProcess

#: In-process simulator, and the `sluice sim` upstream through the openai provider.
MODELS = ["sim", "relay"]
REDIS_URL = "redis://127.0.0.1:6379/0"

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


class Pet(BaseModel):
    name: str
    kind: Literal["cat", "dog", "fish"]
    age: int = Field(ge=0, le=25)


class Member(BaseModel):
    name: str
    email: str
    age: int = Field(ge=0, le=110)
    nickname: str | None


class Address(BaseModel):
    street: str
    city: str


class Household(BaseModel):
    family: str
    members: list[Member] = Field(min_length=1, max_length=4)
    address: Address
    pets: list[Pet]
    budget: float = Field(ge=0, le=10_000)
    owns_home: bool


@pytest.fixture
def client(gateway: ServerProcess) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)


def ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


HOUSEHOLD = ask("Describe a household in Kyoto as JSON")


# --- structured outputs ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_parse_gives_a_parsed_object(client: OpenAI, model: str) -> None:
    completion = client.chat.completions.parse(
        model=model, messages=HOUSEHOLD, response_format=Household
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Household)
    assert choice.message.content is not None
    assert Household.model_validate_json(choice.message.content) == choice.message.parsed


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_parse_gives_a_parsed_object(client: OpenAI, model: str) -> None:
    with client.chat.completions.stream(
        model=model, messages=HOUSEHOLD, response_format=Household
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "content.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 10, "streamed in several chunks"
    parsed = final.choices[0].message.parsed
    assert isinstance(parsed, Household)
    assert Household.model_validate_json("".join(deltas)) == parsed


@pytest.mark.parametrize("model", MODELS)
def test_json_object_mode_answers_an_object(client: OpenAI, model: str) -> None:
    completion = client.chat.completions.create(
        model=model,
        messages=ask("Summarise the water cycle in JSON"),
        response_format={"type": "json_object"},
    )
    content = completion.choices[0].message.content
    assert content is not None
    value = json.loads(content)
    assert isinstance(value, dict) and value


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_a_json_schema_without_a_schema_is_400(client: OpenAI, model: str, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model,
            messages=HOUSEHOLD,
            stream=stream,
            response_format={"type": "json_schema", "json_schema": {"name": "Household"}},
        )
    assert "response_format.json_schema.schema" in caught.value.message


# --- answers vary as a model's do ----------------------------------------------------------


def answer(client: OpenAI, model: str, **options: Any) -> str:
    completion = client.chat.completions.create(
        model=model, messages=ask("Explain message queues"), **options
    )
    content = completion.choices[0].message.content
    assert content
    return content


@pytest.mark.parametrize("model", MODELS)
def test_the_same_seed_gives_the_same_answer_and_another_seed_another(
    client: OpenAI, model: str
) -> None:
    assert answer(client, model, seed=11) == answer(client, model, seed=11)
    assert answer(client, model, seed=11) != answer(client, model, seed=12)
    parsed = [
        client.chat.completions.parse(
            model=model, messages=HOUSEHOLD, response_format=Household, seed=seed
        )
        .choices[0]
        .message.parsed
        for seed in (3, 3, 4)
    ]
    assert parsed[0] == parsed[1] != parsed[2]


@pytest.mark.parametrize("model", MODELS)
def test_unseeded_answers_vary_unless_the_temperature_is_zero(client: OpenAI, model: str) -> None:
    assert len({answer(client, model) for _ in range(3)}) == 3
    assert len({answer(client, model, temperature=0.8) for _ in range(3)}) == 3
    assert len({answer(client, model, temperature=0) for _ in range(3)}) == 1


# --- tool calls ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_ids_never_repeat(client: OpenAI, model: str) -> None:
    messages = ask("What is the weather in Paris today?")
    ids = []
    for _ in range(20):
        completion = client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER_TOOL], temperature=0, seed=1
        )
        calls = completion.choices[0].message.tool_calls
        assert calls is not None
        ids.append(calls[0].id)
    assert len(set(ids)) == 20
    assert all(i.startswith("call_") and len(i) == 29 for i in ids)


@pytest.mark.parametrize("model", MODELS)
def test_a_streamed_tool_call_opens_with_null_content(client: OpenAI, model: str) -> None:
    messages = ask("What is the weather in Paris today?")
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER_TOOL], stream=True
        )
    )
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.content is None
    assert "content" in first.model_fields_set, "sent as null, not left out"
    text = list(client.chat.completions.create(model=model, messages=ask("hi"), stream=True))
    assert text[0].choices[0].delta.content == "", "text still opens with an empty string"
    # The SDK's stream helper ends with content None, as it does against OpenAI.
    with client.chat.completions.stream(
        model=model, messages=messages, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content is None
    assert message.tool_calls and message.tool_calls[0].function.name == "get_weather"
    assert message.tool_calls[0].function.parsed_arguments == {"city": "Paris", "unit": "c"}


# --- system_fingerprint and service_tier --------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_fingerprint_and_service_tier_reach_the_client(client: OpenAI, model: str) -> None:
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=ask("hi"),
            stream=True,
            service_tier="flex",
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None
    assert {c.system_fingerprint for c in chunks} == {SYSTEM_FINGERPRINT}
    assert {c.service_tier for c in chunks} == {"flex"}
    whole = client.chat.completions.create(model=model, messages=ask("hi"))
    assert whole.system_fingerprint == SYSTEM_FINGERPRINT
    assert whole.service_tier == "default"


async def records_of(response: aiohttp.ClientResponse) -> list[str]:
    decoder = SSEDecoder()
    records: list[str] = []
    async for piece in response.content.iter_any():
        records += [event.data for event in decoder.feed(piece)]
    return records


async def test_a_resumed_stream_carries_the_fields_and_counts_records(
    gateway: ServerProcess,
) -> None:
    body = {"model": "relay", "stream": True, "seed": 5, "messages": ask("Explain tides")}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/chat/completions", json=body) as response:
            stream_id = response.headers["x-sluice-stream-id"]
            records = await records_of(response)
        async with session.get(
            f"{gateway.url}/v1/streams/{stream_id}", params={"after": "3"}
        ) as resumed:
            assert resumed.status == 200
            rest = await records_of(resumed)
    # The fields ride on the records and make none of their own: offsets still count
    # what the client received.
    assert rest == records[3:]
    chunks = [json.loads(r) for r in records[:-1]]
    assert all(c["system_fingerprint"] == SYSTEM_FINGERPRINT for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_the_new_event_fields_survive_json() -> None:
    for event in (
        ResponseMeta("fp_1", "flex"),
        ResponseMeta(None, "default"),
        RoleStart(1, tool_call=True),
    ):
        assert event_from_dict(json.loads(json.dumps(event_to_dict(event)))) == event
    # Entries written before the field existed still read.
    assert event_from_dict({"event": "RoleStart", "index": 0, "role": "assistant"}) == RoleStart()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"test-{new_key()}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{name}:*"):
        await client.delete(key)
    await client.aclose()


async def test_a_replay_from_redis_keeps_the_fields_and_the_null_content(prefix: str) -> None:
    owner = RedisEventLogs(REDIS_URL, retention_seconds=60, prefix=prefix)
    reader = RedisEventLogs(REDIS_URL, retention_seconds=60, prefix=prefix)
    events: list[Event] = [
        ResponseMeta("fp_upstream", "priority"),
        RoleStart(0, tool_call=True),
        ToolCallDelta(0, "", id="call_x", name="get_weather"),
        ToolCallDelta(0, '{"city":"Paris"}'),
        Finish("tool_calls", 0),
        Usage(3, 4, 7),
    ]
    owner.begin(StreamMeta("s1", "m", 0, False))
    owner.publish("s1", 1, events)
    owner.publish("s1", len(events) + 1, [], end=True)
    await owner.flush()
    meta = await reader.meta("s1")
    assert meta is not None
    replayed: list[Event] = []
    async with asyncio.timeout(10):
        async for entry in reader.entries(meta):
            replayed += entry.events
            if entry.end:
                break
    assert replayed == events
    encoder = ChunkEncoder("chatcmpl-s1", 1, "m", include_usage=False)
    assert encoder.encode_one(replayed[0]) == b"", "no record of its own"
    first = json.loads(encoder.encode_one(replayed[1]).removeprefix(b"data: "))
    assert first["system_fingerprint"] == "fp_upstream" and first["service_tier"] == "priority"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": None}
    await owner.aclose()
    await reader.aclose()


# --- routes that do not exist ---------------------------------------------------------------


async def test_unknown_routes_get_openais_message(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    async with aiohttp.ClientSession() as session:
        for server in (gateway, upstream):
            for method, path in (("POST", "/v1/nope"), ("GET", "/v1/nope/deeper")):
                async with session.request(method, server.url + path, json={}) as response:
                    assert response.status == 404
                    error = (await response.json())["error"]
                    # OpenAI's four fields (a request id may ride along; the SDKs
                    # ignore it).
                    assert {k: error[k] for k in ("message", "type", "param", "code")} == {
                        "message": f"Invalid URL ({method} {path})",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }


def test_the_sdk_reads_the_unknown_route_error(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.post("/nope", body={}, cast_to=object)
    assert caught.value.status_code == 404
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "Invalid URL (POST /v1/nope)"
    assert caught.value.body["type"] == "invalid_request_error"
