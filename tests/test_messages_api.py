"""The Anthropic Messages API at ``/v1/messages`` (the official ``anthropic`` SDK
pointed at a running gateway), and the ``anthropic`` provider (Claude-format upstreams,
here ``sluice sim`` speaking Messages) behind every edge — with upstream cancellation
checked at the simulator for each."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from anthropic.types import ToolParam
from openai.types.chat import ChatCompletionToolParam

from sluice.events import Event, Finish, RoleStart, TextDelta, ToolCallDelta, Usage
from sluice.providers.anthropic import AnthropicProvider
from sluice.providers.http_client import HttpClient
from sluice.settings import ModelConfig
from sluice.wire.anthropic_events import accumulate
from sluice.wire.openai_request import chat_request_from_body
from sluice.wire.sse import SSEDecoder
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, running

MASTER = "sk-master-messages-" + "m" * 20
CONFIG = """
keepalive_seconds = 1.0
send_timeout_seconds = 2.0
max_body_bytes = 65536

[[models]]
name = "sim"
provider = "sim"
options = {{ ttft_ms = 5, tokens_per_second = 2000, length = 60 }}

[[models]]
name = "relay"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"
retry = {{ attempts = 1 }}

[[models]]
name = "relay-echo"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim-echo"

[[models]]
name = "claude"
provider = "anthropic"
base_url = "{upstream}/v1"
api_key = "sk-ant-upstream-secret"
upstream_model = "sim"
retry = {{ attempts = 2, backoff_initial = 0.01 }}

[[models]]
name = "claude-echo"
provider = "anthropic"
base_url = "{upstream}/v1"
upstream_model = "sim-echo"
"""
WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": dict(WEATHER["input_schema"])},
}
SLOW = {"tokens_per_second": 20, "length": 200}


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("messages")
    sim_args = ["sim", "--ttft-ms", "5", "--tps", "2000", "--length", "40"]
    with running(sim_args, tmp, name="sim", health="/health") as sim:
        config = tmp / "gateway.toml"
        config.write_text(CONFIG.format(upstream=sim.url))
        env = base_env(SLUICE_MASTER_KEY=MASTER)
        with running(["serve", "--config", str(config)], tmp, name="gateway", env=env) as gateway:
            yield gateway, sim


@pytest.fixture(scope="module")
def gateway(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[0]


@pytest.fixture(scope="module")
def sim(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[1]


@pytest.fixture
def claude(gateway: ServerProcess) -> Iterator[anthropic.Anthropic]:
    # No SDK-side retries: each error class must come from exactly one response.
    with anthropic.Anthropic(
        base_url=gateway.url, api_key=MASTER, max_retries=0, timeout=20
    ) as client:
        yield client


@pytest.fixture
def chat(gateway: ServerProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=MASTER, max_retries=0, timeout=20
    ) as client:
        yield client


def body_of(error: anthropic.APIStatusError) -> dict[str, Any]:
    assert isinstance(error.body, dict)
    return error.body


def ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# -- /v1/messages with the anthropic SDK -----------------------------------------------


@pytest.mark.parametrize("model", ["sim", "relay", "claude"])
def test_create_answers_a_message(claude: anthropic.Anthropic, model: str) -> None:
    raw = claude.messages.with_raw_response.create(
        model=model, max_tokens=200, messages=ask("Explain streaming gateways")
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == model
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and len(message.content[0].text) > 20
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["request-id"] == raw.headers["x-request-id"]


@pytest.mark.parametrize("model", ["sim", "relay", "claude"])
def test_stream_with_a_tool_use_round_trip(claude: anthropic.Anthropic, model: str) -> None:
    messages = ask("What is the weather in Paris?")
    with claude.messages.stream(
        model=model, max_tokens=200, messages=messages, tools=[WEATHER]
    ) as stream:
        kinds = [event.type for event in stream]
        call = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "input_json" in kinds  # the SDK's own event for input_json_delta
    assert call.stop_reason == "tool_use"
    (use,) = [block for block in call.content if block.type == "tool_use"]
    assert use.name == "get_weather" and use.input == {"city": "Paris"}
    # Send the tool's result back: the model answers with it.
    follow_up = [
        *messages,
        {"role": "assistant", "content": call.content},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 C, sunny"}],
        },
    ]
    with claude.messages.stream(
        model=model, max_tokens=200, messages=follow_up, tools=[WEATHER]
    ) as stream:
        text = "".join(stream.text_stream)
        answer = stream.get_final_message()
    assert "18 C, sunny" in text
    assert answer.stop_reason == "end_turn" and answer.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["relay-echo", "claude-echo"])
def test_system_prompts_and_stop_sequences(claude: anthropic.Anthropic, model: str) -> None:
    for system in ("Be brief.", [{"type": "text", "text": "Be brief."}]):
        message = claude.messages.create(
            model=model,
            max_tokens=100,
            system=system,  # type: ignore[arg-type]
            stop_sequences=["STOP"],
            messages=ask("hello there STOP and more"),
            # Sampling knobs this SDK version no longer types: still accepted here.
            extra_body={"temperature": 0.2, "top_p": 0.9, "top_k": 5},
        )
        assert message.content[0].text == "hello there "  # type: ignore[union-attr]
        assert message.stop_reason == "end_turn"


def test_max_tokens_stops_with_max_tokens(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude", max_tokens=3, messages=ask("Tell me more"))
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    short = claude.messages.count_tokens(model="relay", messages=ask("Hi"))
    longer = claude.messages.count_tokens(
        model="relay", system="You are terse.", messages=ask("Hi " * 200), tools=[WEATHER]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="nope", messages=ask("Hi"))


def test_errors_come_in_anthropic_shape(
    claude: anthropic.Anthropic, gateway: ServerProcess
) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(model="relay", max_tokens=10, messages=[])
    assert body_of(bad.value)["type"] == "error"
    assert body_of(bad.value)["error"]["type"] == "invalid_request_error"
    assert "messages" in body_of(bad.value)["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="nope", max_tokens=10, messages=ask("hi"))
    assert body_of(missing.value)["error"]["type"] == "not_found_error"
    with (
        anthropic.Anthropic(base_url=gateway.url, api_key="sk-wrong", max_retries=0) as stranger,
        pytest.raises(anthropic.AuthenticationError) as refused,
    ):
        stranger.messages.create(model="relay", max_tokens=10, messages=ask("hi"))
    assert body_of(refused.value)["error"]["type"] == "authentication_error"
    assert body_of(refused.value)["request_id"] == refused.value.response.headers["request-id"]


async def test_x_api_key_is_the_key_and_bearer_still_works(gateway: ServerProcess) -> None:
    body = {"model": "sim", "max_tokens": 5, "messages": ask("hi")}
    url = gateway.url + "/v1/messages"
    async with aiohttp.ClientSession() as session:
        for headers in (
            {"x-api-key": MASTER, "anthropic-version": "2023-06-01"},
            {"Authorization": f"Bearer {MASTER}"},
        ):
            async with session.post(url, json=body, headers=headers) as response:
                assert response.status == 200
                assert (await response.json())["type"] == "message"
        async with session.post(url, json=body) as response:
            assert response.status == 401
            assert (await response.json())["error"]["type"] == "authentication_error"
        # A browser may send both headers cross-origin only after a preflight allows them.
        preflight = {
            "Origin": gateway.url,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, anthropic-version",
        }
        async with session.options(url, headers=preflight) as response:
            allowed = response.headers["access-control-allow-headers"]
            assert "x-api-key" in allowed and "anthropic-version" in allowed


async def test_a_slow_first_token_gets_ping_events(gateway: ServerProcess) -> None:
    # keepalive_seconds is 1 in this config: the headers go out with Anthropic's ping.
    body = {
        "model": "relay",
        "max_tokens": 20,
        "stream": True,
        "messages": ask("hi"),
        "sim": {"ttft_ms": 1500},
    }
    async with (
        aiohttp.ClientSession(headers={"x-api-key": MASTER}) as session,
        session.post(gateway.url + "/v1/messages", json=body) as response,
    ):
        events = SSEDecoder().feed(await response.read())
    names = [e.event for e in events]
    assert names[0] == "ping" and json.loads(events[0].data) == {"type": "ping"}
    assert names[1] == "message_start" and names[-1] == "message_stop"


def test_a_body_past_the_limit_is_content_too_large(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.ContentTooLargeError):
        claude.messages.create(model="relay", max_tokens=10, messages=ask("x" * 70_000))


def test_failure_mid_stream_is_an_error_event(claude: anthropic.Anthropic) -> None:
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as failed,
        claude.messages.stream(
            model="relay",
            max_tokens=200,
            messages=ask("Tell me a story"),
            extra_body={"sim": {"malformed_after": 3}},
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert len(texts) == 3  # what came before the failure
    assert body_of(failed.value)["type"] == "error"
    assert body_of(failed.value)["error"]["type"] == "api_error"


# -- resume ----------------------------------------------------------------------------


def records(raw: bytes) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (e.id, e.event, json.loads(e.data)) for e in SSEDecoder().feed(raw) if e.event != "ping"
    ]


async def test_a_detached_messages_stream_resumes_in_messages_format(
    gateway: ServerProcess,
) -> None:
    auth = {"x-api-key": MASTER}
    body = {
        "model": "relay",
        "max_tokens": 200,
        "stream": True,
        "messages": ask("Explain backpressure"),
        "sim": {"tokens_per_second": 100, "length": 30},
    }
    async with aiohttp.ClientSession(headers=auth) as session:
        response = await session.post(
            gateway.url + "/v1/messages", json=body, headers={"X-Sluice-On-Disconnect": "detach"}
        )
        stream_id = response.headers["x-sluice-stream-id"]
        decoder = SSEDecoder()
        first: list[tuple[str, dict[str, Any]]] = []
        async for piece in response.content.iter_any():
            first += [
                (e.event, json.loads(e.data)) for e in decoder.feed(piece) if e.event != "ping"
            ]
            if len(first) >= 5:
                break
        response.close()
        first = first[:5]
        url = f"{gateway.url}/v1/streams/{stream_id}"
        async with session.get(url, params={"after": "5"}) as resumed:
            assert resumed.status == 200
            tail = records(await resumed.read())
        async with session.get(url) as replay:
            whole = records(await replay.read())
    assert [number for number, _, _ in tail] == [str(n) for n in range(6, len(whole) + 1)]
    assert [(name, data) for _, name, data in whole[:5]] == first
    assert [(name, data) for _, name, data in whole[5:]] == [(n, d) for _, n, d in tail]
    assert tail[-1][1] == "message_stop"
    message = accumulate([*first, *((name, data) for _, name, data in tail)])
    assert message["stop_reason"] == "end_turn" and len(message["content"][0]["text"]) > 20


# -- the anthropic provider behind /v1/chat/completions --------------------------------


def test_claude_model_through_chat_completions(chat: openai.OpenAI) -> None:
    whole = chat.chat.completions.create(model="claude", messages=ask("Explain caching"), seed=3)
    assert whole.choices[0].finish_reason == "stop"
    assert len(whole.choices[0].message.content or "") > 20
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    chunks = list(
        chat.chat.completions.create(
            model="claude",
            messages=ask("Explain caching"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text) > 20
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    called = chat.chat.completions.create(
        model="claude",
        messages=ask("What is the weather in Rome?"),
        tools=[TOOL],
    )
    choice = called.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Rome"}  # type: ignore[union-attr]
    streamed = list(
        chat.chat.completions.create(
            model="claude",
            messages=ask("What is the weather in Rome?"),
            tools=[TOOL],
            stream=True,
        )
    )
    first_call = next(
        c.choices[0].delta.tool_calls[0]
        for c in streamed
        if c.choices and c.choices[0].delta.tool_calls
    )
    assert first_call.function is not None and first_call.function.name == "get_weather"
    assert streamed[-1].choices[0].finish_reason == "tool_calls"


def test_claude_upstream_529_is_retried(chat: openai.OpenAI, sim: ServerProcess) -> None:
    key = new_key()
    answer = chat.chat.completions.create(
        model="claude",
        messages=ask("hello"),
        extra_body={"sim": {"fail_status": 529, "fail_times": 1, "key": key}},
    )
    assert answer.choices[0].message.content
    assert upstream_saw(sim, key)["attempts"] == 2


def test_claude_overloaded_error_event_is_retried_then_reported(
    chat: openai.OpenAI, sim: ServerProcess
) -> None:
    key = new_key()
    with pytest.raises(openai.InternalServerError) as failed:
        chat.chat.completions.create(
            model="claude",
            messages=ask("hello"),
            extra_body={"sim": {"malformed_after": 0, "key": key}},
        )
    assert failed.value.status_code == 502
    assert "overloaded_error" in failed.value.message
    assert upstream_saw(sim, key)["attempts"] == 2  # the first failure was retried


# -- cancellation: a client leaving closes the upstream call ---------------------------


async def wait_for_disconnect(sim: ServerProcess, key: str) -> float:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        seen = upstream_saw(sim, key)
        if seen.get("disconnected_at"):
            stamp: float = seen["disconnected_at"][0]
            return stamp
        await asyncio.sleep(0.02)
    raise AssertionError("the upstream never saw the disconnect")


def body_for(api: str, model: str, key: str, stream: bool) -> tuple[str, dict[str, Any]]:
    sim = {**SLOW, "key": key}
    if api == "messages":
        return "/v1/messages", {
            "model": model,
            "max_tokens": 500,
            "stream": stream,
            "messages": ask("Explain"),
            "sim": sim,
        }
    return "/v1/chat/completions", {
        "model": model,
        "stream": stream,
        "messages": ask("Explain"),
        "sim": sim,
    }


@pytest.mark.parametrize(
    ("api", "model"), [("messages", "relay"), ("messages", "claude"), ("chat", "claude")]
)
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
async def test_client_leaving_cancels_the_upstream(
    gateway: ServerProcess, sim: ServerProcess, api: str, model: str, stream: bool
) -> None:
    key = new_key()
    path, body = body_for(api, model, key, stream)
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {MASTER}"}) as session:
        if stream:
            response = await session.post(gateway.url + path, json=body)
            assert response.status == 200
            decoder = SSEDecoder()
            received = 0
            async for piece in response.content.iter_any():
                received += len(decoder.feed(piece))
                if received >= 4:
                    break
            response.close()
        else:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(session.post(gateway.url + path, json=body), 0.5)
        left_at = time.time()
    stamp = await wait_for_disconnect(sim, key)
    assert stamp - left_at < 0.5
    assert upstream_saw(sim, key)["completed"] == 0


# -- the provider on the wire (a loopback server that records what it got) -------------

CANNED = [
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "x",
                "usage": {"input_tokens": 11, "output_tokens": 1},
            },
        },
    ),
    ("ping", {"type": "ping"}),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    (
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {}},
        },
    ),
    (
        "content_block_delta",
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
        },
    ),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 4},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
]


async def test_provider_sends_messages_format_and_reads_the_stream(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    left = asyncio.Event()

    async def messages(request: web.Request) -> web.StreamResponse:
        seen["headers"] = dict(request.headers)
        seen["path"] = request.path
        seen["body"] = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if seen["body"]["messages"][0]["content"][0]["text"] == "hang":
            try:
                await response.write(b'event: ping\ndata: {"type": "ping"}\n\n')
                await asyncio.sleep(30)
            except (asyncio.CancelledError, ConnectionResetError):
                left.set()
                raise
        for name, data in CANNED:
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    http = HttpClient()
    try:
        provider = AnthropicProvider(
            ModelConfig(
                name="c",
                provider="anthropic",
                base_url=f"http://127.0.0.1:{port}/v1",
                api_key="sk-ant-test",  # type: ignore[arg-type]
                upstream_model="claude-up",
            ),
            http,
        )
        request = chat_request_from_body(
            {
                "model": "c",
                "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "go"}],
                "max_tokens": 50,
                "sim": {"key": "passed"},
            }
        )
        events: list[Event] = [e async for batch in provider.stream(request) for e in batch]
        assert seen["path"] == "/v1/messages"
        assert seen["headers"]["x-api-key"] == "sk-ant-test"
        assert seen["headers"]["anthropic-version"] == "2023-06-01"
        assert seen["body"] == {
            "model": "claude-up",
            "system": "S",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "go"}]}],
            "max_tokens": 50,
            "stream": True,
            "sim": {"key": "passed"},
        }
        assert events == [
            RoleStart(0),
            TextDelta("Hi"),
            ToolCallDelta(0, "", id="toolu_9", name="f", type="function"),
            ToolCallDelta(0, '{"a": 1}'),
            Finish("tool_calls"),
            Usage(11, 4, 15),
        ]
        # Closing the iterator closes the upstream connection at once.
        hanging = chat_request_from_body(
            {"model": "c", "messages": [{"role": "user", "content": "hang"}]}
        )
        iterator = cast(AsyncGenerator[list[Event], None], provider.stream(hanging))
        pending = asyncio.ensure_future(iterator.__anext__())
        await asyncio.sleep(0.2)
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await iterator.aclose()
        await asyncio.wait_for(left.wait(), 1.0)
    finally:
        await http.aclose()
        await runner.cleanup()


def test_the_sim_speaks_messages_to_the_sdk(sim: ServerProcess) -> None:
    with anthropic.Anthropic(base_url=sim.url, api_key="unused", max_retries=0) as client:
        message = client.messages.create(model="sim-echo", max_tokens=50, messages=ask("echo me"))
        assert message.content[0].text == "echo me"  # type: ignore[union-attr]
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.create(model="sim", max_tokens=0, messages=ask("x"))
    assert body_of(bad.value)["error"]["type"] == "invalid_request_error"


def test_nothing_crashed_on_the_way(gateway: ServerProcess, sim: ServerProcess) -> None:
    # Last in the file: every request above went through without a server-side crash.
    assert "Traceback" not in gateway.output(), gateway.output()[-4000:]
    assert "Traceback" not in sim.output(), sim.output()[-4000:]
