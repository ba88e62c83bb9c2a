"""The Responses API against a running gateway, through the official `openai` SDK:
create (streamed and not), the semantic events in order with their sequence numbers,
function tools round trip, structured output with parse(), stored responses (GET,
DELETE, previous_response_id, store=false), resume at a sequence number, cancel, and
every error in OpenAI's shape. Another key's response is a 404."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel

from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess
from tests.test_tenancy import MASTER, auth, create_key, tenants  # noqa: F401

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
SLOW = {"ttft_ms": 0, "tokens_per_second": 40, "length": 400}


@pytest.fixture
def client(gateway: ServerProcess) -> OpenAI:
    return OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_a_response_is_created_stored_read_and_deleted(client: OpenAI, model: str) -> None:
    response = client.responses.create(
        model=model, input="Explain streaming gateways", instructions="Be brief.", temperature=0
    )
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == model
    assert response.instructions == "Be brief."
    assert len(response.output_text) > 20
    assert response.usage is not None
    assert response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    [message] = response.output
    assert message.type == "message" and message.status == "completed"

    again = _eventually(lambda: client.responses.retrieve(response.id), "completed")
    assert again.output_text == response.output_text
    assert again.id == response.id
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(response.id)
    assert response.id in caught.value.message


def _eventually(read: Any, status: str) -> Any:
    """The stored copy is written off the request path: it lands a moment later."""
    deadline = time.monotonic() + 5
    while True:
        try:
            value = read()
            if value.status == status:
                return value
        except openai.NotFoundError:
            if time.monotonic() > deadline:
                raise
        assert time.monotonic() < deadline, "the stored response never settled"
        time.sleep(0.05)


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_streamed_events_come_in_order_and_add_up(client: OpenAI, model: str) -> None:
    events = list(client.responses.create(model=model, input="Tell me about rivers", stream=True))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == deltas
    assert final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == deltas  # type: ignore[union-attr]


def test_the_stream_helper_gives_the_final_response(client: OpenAI) -> None:
    with client.responses.stream(model="sim", input="Write a haiku", temperature=0) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(texts)
    whole = client.responses.create(model="sim", input="Write a haiku", temperature=0)
    assert whole.output_text == final.output_text


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_a_function_tool_round_trip(client: OpenAI, model: str) -> None:
    first = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    assert call.call_id.startswith("call_")
    # The tool's output goes back with previous_response_id: the stored conversation
    # carries the question and the call.
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 C, sunny"}],
        tools=[WEATHER],  # type: ignore[list-item]
    )
    assert second.previous_response_id == first.id
    assert "22 C, sunny" in second.output_text
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens


def test_a_streamed_function_call_sends_argument_deltas(client: OpenAI) -> None:
    events = list(
        client.responses.create(
            model="relay",
            input="weather in Tokyo",
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice={"type": "function", "name": "get_weather"},
            stream=True,
        )
    )
    added = next(e for e in events if e.type == "response.output_item.added")
    assert added.item.type == "function_call"  # type: ignore[union-attr]
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert len(pieces) > 1 and "".join(pieces) == done.arguments  # type: ignore[union-attr]
    json.loads(done.arguments)  # type: ignore[union-attr]


class Trip(BaseModel):
    city: str
    days: int
    sights: list[str]


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_parse_with_a_pydantic_model(client: OpenAI, model: str) -> None:
    response = client.responses.parse(model=model, input="Plan a trip", text_format=Trip)
    parsed = response.output_parsed
    assert isinstance(parsed, Trip)
    with client.responses.stream(model=model, input="Plan a trip", text_format=Trip) as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert isinstance(final.output_parsed, Trip)


def test_previous_response_id_continues_the_conversation(client: OpenAI, upstream: Any) -> None:
    key = new_key()
    first = client.responses.create(
        model="relay-echo", input="first question", extra_body={"sim": {"key": key}}
    )
    second = client.responses.create(
        model="relay-echo",
        input="second question",
        previous_response_id=first.id,
        extra_body={"sim": {"key": key}},
    )
    # The upstream saw the whole conversation as chat messages, the old answer included.
    prompts = upstream_saw(upstream, key)["prompts"]
    assert len(prompts) == 2
    assert second.output_text == "second question"
    assert first.output_text == "first question"


def test_store_false_is_not_kept(client: OpenAI) -> None:
    response = client.responses.create(model="sim", input="hello", store=False)
    assert response.status == "completed"
    time.sleep(0.3)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="sim", input="again", previous_response_id=response.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sim"}, "input"),
        ({"model": "sim", "input": []}, "input"),
        ({"model": "sim", "input": 5}, "input"),
        ({"model": "sim", "input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"model": "sim", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "sim", "input": [{"type": "function_call_output"}]}, "input[0].call_id"),
        ({"model": "sim", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "sim", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "sim", "input": "x", "temperature": 3}, "temperature"),
        (
            {"model": "sim", "input": "x", "text": {"format": {"type": "json_schema"}}},
            "text.format",
        ),
        ({"model": "sim", "input": "x", "background": True}, "background"),
    ],
)
async def test_bad_requests_are_400_naming_the_parameter(
    gateway: ServerProcess, body: dict[str, Any], param: str
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url + "/v1/responses", json=body) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


async def test_unknown_model_methods_and_ids(gateway: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gateway.url + "/v1/responses", json={"model": "nope", "input": "x"}
        ) as response:
            assert response.status == 404
            assert (await response.json())["error"]["param"] == "model"
        async with session.get(gateway.url + "/v1/responses") as response:
            assert response.status == 405
        for target in ("resp_doesnotexist", "nonsense", "resp_../../etc", "resp_" + "a" * 500):
            async with session.get(gateway.url + f"/v1/responses/{target}") as response:
                assert response.status == 404, target
                assert (await response.json())["error"]["type"] == "invalid_request_error"
        async with session.post(
            gateway.url + "/v1/responses", data=b'{"model": "sim", "input": ', headers=JSON
        ) as response:
            assert response.status == 400


JSON = {"Content-Type": "application/json"}


async def _records(response: aiohttp.ClientResponse, limit: int | None = None) -> list[Any]:
    """SSE records of a Responses stream, at most ``limit``."""
    records: list[Any] = []
    buffer = b""
    async for piece in response.content.iter_any():
        buffer += piece
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            data = [line[6:] for line in block.split(b"\n") if line.startswith(b"data: ")]
            if data:
                records.append(json.loads(data[0]))
                if limit is not None and len(records) >= limit:
                    return records
    return records


@pytest.mark.parametrize("via", ["responses", "streams"])
async def test_a_dropped_stream_resumes_at_a_sequence_number(
    gateway: ServerProcess, via: str
) -> None:
    body = {"model": "sim", "input": "long story", "stream": True, "sim": SLOW}
    headers = {**JSON, "X-Sluice-On-Disconnect": "detach"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/responses", json=body, headers=headers) as r:
            assert r.status == 200
            head = await _records(r, limit=8)
        response_id = head[0]["response"]["id"]
        last = head[-1]["sequence_number"]
        if via == "responses":
            url = f"{gateway.url}/v1/responses/{response_id}?stream=true&starting_after={last}"
            resume_headers: dict[str, str] = {}
        else:
            url = f"{gateway.url}/v1/streams/{response_id.removeprefix('resp_')}"
            resume_headers = {"Last-Event-ID": str(last)}
        async with session.get(url, headers=resume_headers) as r:
            assert r.status == 200
            tail = await _records(r)
    records = head + tail
    assert [rec["sequence_number"] for rec in records] == list(range(len(records)))
    assert records[-1]["type"] == "response.completed"
    deltas = "".join(r["delta"] for r in records if r["type"] == "response.output_text.delta")
    final = records[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == deltas
    assert final["id"] == response_id


async def test_cancel_stops_a_running_response(gateway: ServerProcess, upstream: Any) -> None:
    key = new_key()
    body = {"model": "relay", "input": "long", "stream": True, "sim": {**SLOW, "key": key}}
    headers = {**JSON, "X-Sluice-On-Disconnect": "detach"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/responses", json=body, headers=headers) as r:
            head = await _records(r, limit=6)
        response_id = head[0]["response"]["id"]
        async with session.post(f"{gateway.url}/v1/responses/{response_id}/cancel") as r:
            assert r.status == 200
            cancelled = await r.json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["output"][0]["status"] == "incomplete"
    await _until(lambda: upstream_saw(upstream, key)["disconnected"] == 1)


@pytest.mark.parametrize("stream", [True, False])
async def test_a_client_that_leaves_cancels_the_upstream(
    gateway: ServerProcess, upstream: Any, stream: bool
) -> None:
    key = new_key()
    body = {"model": "relay", "input": "long", "stream": stream, "sim": {**SLOW, "key": key}}
    async with aiohttp.ClientSession() as session:
        if stream:
            async with session.post(gateway.url + "/v1/responses", json=body) as r:
                await _records(r, limit=5)
        else:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.5):
                    await session.post(gateway.url + "/v1/responses", json=body)
    await _until(lambda: upstream_saw(upstream, key)["disconnected"] == 1)


async def _until(check: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "did not happen"
        await asyncio.sleep(0.05)


async def test_another_keys_response_is_not_found(tenants: ServerProcess) -> None:  # noqa: F811
    alice = (await create_key(tenants, "alice"))["key"]
    bob = (await create_key(tenants, "bob"))["key"]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            tenants.url + "/v1/responses",
            json={"model": "sim", "input": "secret plans"},
            headers=auth(alice),
        ) as r:
            assert r.status == 200
            response_id = (await r.json())["id"]
        await asyncio.sleep(0.3)  # the stored copy lands off the request path
        attempts = [
            ("GET", f"/v1/responses/{response_id}", None),
            ("GET", f"/v1/responses/{response_id}?stream=true", None),
            ("DELETE", f"/v1/responses/{response_id}", None),
            ("POST", f"/v1/responses/{response_id}/cancel", None),
            (
                "POST",
                "/v1/responses",
                {"model": "sim", "input": "x", "previous_response_id": response_id},
            ),
        ]
        for method, path, body in attempts:
            async with session.request(
                method, tenants.url + path, json=body, headers=auth(bob)
            ) as r:
                assert r.status == 404, (method, path)
                assert "secret" not in await r.text()
        async with session.get(
            tenants.url + f"/v1/responses/{response_id}", headers=auth(alice)
        ) as r:
            assert r.status == 200
        async with session.post(
            tenants.url + "/v1/responses", json={"model": "sim", "input": "x"}
        ) as r:
            assert r.status == 401


NODE = Path(__file__).parent / "node"


def node_client(
    gateway: ServerProcess, model: str, sim: dict[str, Any], *extra: str
) -> dict[str, Any]:
    result = subprocess.run(
        ["node", str(NODE / "responses_stream.mjs"), gateway.url + "/v1", model, *extra],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SIM": json.dumps(sim)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def test_the_node_sdk_streams_a_response(gateway: ServerProcess, upstream: Any) -> None:
    key = new_key()
    answer = node_client(gateway, "relay", {"key": key})
    assert answer["status"] == "completed"
    assert answer["types"][0] == "response.created"
    assert answer["types"][-1] == "response.completed"
    assert len(answer["text"]) > 20
    assert upstream_saw(upstream, key)["completed"] == 1


async def test_the_node_sdk_aborting_cancels_the_upstream(
    gateway: ServerProcess, upstream: Any
) -> None:
    key = new_key()
    # A long answer at 40 tokens/s outlives the abort after six events.
    answer = await asyncio.to_thread(node_client, gateway, "relay", {**SLOW, "key": key}, "6")
    assert answer["status"] == "aborted"
    await _until(lambda: upstream_saw(upstream, key)["disconnected"] == 1)


@pytest.mark.parametrize("stream", [False, True])
def test_a_response_can_be_continued_and_read_at_once(client: OpenAI, stream: bool) -> None:
    # The stored copy is written off the request path; a client that continues or reads
    # it the moment it was sent must still find it (here, no waiting in between).
    for _ in range(5):
        if stream:
            with client.responses.stream(model="sim", input="one") as events:
                for _ in events:
                    pass
                first = events.get_final_response()
        else:
            first = client.responses.create(model="sim", input="one")
        second = client.responses.create(model="sim", input="two", previous_response_id=first.id)
        assert second.status == "completed"
        assert client.responses.retrieve(first.id).id == first.id


async def test_a_response_deleted_while_it_runs_stays_deleted(gateway: ServerProcess) -> None:
    body = {"model": "sim", "input": "long", "stream": True, "sim": SLOW}
    headers = {**JSON, "X-Sluice-On-Disconnect": "detach"}
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/responses", json=body, headers=headers) as r:
            head = await _records(r, limit=4)
            response_id = head[0]["response"]["id"]
            async with session.delete(f"{gateway.url}/v1/responses/{response_id}") as deleted:
                assert deleted.status == 200
                assert (await deleted.json())["deleted"] is True
            tail = await _records(r)  # the answer runs to its end
        assert tail[-1]["type"] == "response.completed"
        await asyncio.sleep(0.3)
        async with session.get(f"{gateway.url}/v1/responses/{response_id}") as r:
            assert r.status == 404
        continued = {"model": "sim", "input": "x", "previous_response_id": response_id}
        async with session.post(gateway.url + "/v1/responses", json=continued) as r:
            assert r.status == 404


def test_a_chain_ends_at_the_models_context(client: OpenAI) -> None:
    # The test models keep the default 8,192-token context; each turn here is ~6,000.
    words = "lorem ipsum dolor sit amet " * 900
    first = client.responses.create(model="sim", input=words)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="sim", input=words, previous_response_id=first.id)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


async def test_other_apis_streams_are_not_responses(gateway: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        chat = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with session.post(gateway.url + "/v1/chat/completions", json=chat) as r:
            stream_id = r.headers["x-sluice-stream-id"]
            await r.read()
        for method, path in (
            ("GET", f"/v1/responses/resp_{stream_id}?stream=true"),
            ("POST", f"/v1/responses/resp_{stream_id}/cancel"),
            ("GET", f"/v1/responses/resp_{stream_id}"),
            ("POST", "/v1/responses/input_tokens"),
            ("POST", "/v1/responses/compact"),
        ):
            async with session.request(method, gateway.url + path) as r:
                assert r.status == 404, (method, path)
