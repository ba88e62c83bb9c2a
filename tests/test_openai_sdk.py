"""The official `openai` package, pointed at the gateway, works unchanged."""

from __future__ import annotations

import json

import openai
import pytest
from openai import OpenAI

from tests.servers import ServerProcess

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
def client(gateway: ServerProcess) -> OpenAI:
    # No SDK-side retries: each error class must come from exactly one response.
    return OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=20)


def hello(text: str = "Explain streaming gateways") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_stream_reassembles_to_the_non_streamed_answer(client: OpenAI, model: str) -> None:
    stream = client.chat.completions.create(model=model, messages=hello(), stream=True, seed=7)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.model == model for c in chunks)
    assert len({c.id for c in chunks}) == 1
    whole = client.chat.completions.create(model=model, messages=hello(), seed=7)
    assert whole.choices[0].message.content == text
    assert whole.model == model
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    assert len(text) > 50


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_usage_chunk_only_when_asked(client: OpenAI, model: str) -> None:
    plain = list(client.chat.completions.create(model=model, messages=hello(), stream=True))
    assert all(c.usage is None for c in plain)
    counted = list(
        client.chat.completions.create(
            model=model,
            messages=hello(),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = counted[-1]
    assert last.choices == []
    assert last.usage is not None
    deltas = sum(1 for c in counted if c.choices and c.choices[0].delta.content)
    assert last.usage.completion_tokens == deltas
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_n_choices_stream_in_index_order(client: OpenAI, model: str) -> None:
    chunks = list(
        client.chat.completions.create(model=model, messages=hello(), stream=True, n=2, seed=1)
    )
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts[0] and texts[1] and texts[0] != texts[1]


@pytest.mark.parametrize("model", ["sim", "relay"])
def test_tool_calls_stream_and_assemble(client: OpenAI, model: str) -> None:
    messages = hello("What is the weather in Paris today?")
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER_TOOL], stream=True
    )
    name, arguments, call_id, reason = "", "", None, None
    firsts = 0
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.id:
                    firsts += 1
                    call_id = call.id
                if call.function and call.function.name:
                    name += call.function.name
                if call.function and call.function.arguments:
                    arguments += call.function.arguments
            reason = choice.finish_reason or reason
    assert firsts == 1, "id, type and name belong to the first delta only"
    assert name == "get_weather"
    assert json.loads(arguments) == {"city": "Paris", "unit": "c"}
    assert reason == "tool_calls"
    whole = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL])
    calls = whole.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == name
    assert json.loads(calls[0].function.arguments) == json.loads(arguments)
    # Ids are fresh for every call, as OpenAI's are: never one seen before.
    assert calls[0].id and call_id and calls[0].id != call_id
    assert whole.choices[0].finish_reason == "tool_calls"


def test_max_tokens_stops_with_length(client: OpenAI) -> None:
    whole = client.chat.completions.create(model="relay", messages=hello(), max_tokens=5)
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 5


def test_models_list(client: OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert {"sim", "relay", "relay-echo", "dead"} <= names


def test_invalid_body_is_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim", messages=[{"role": "wizard", "content": "hi"}])
    assert caught.value.status_code == 400
    assert "messages[0].role" in caught.value.message


def test_unknown_model_is_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-nope", messages=hello())
    assert caught.value.code == "model_not_found"


def test_upstream_429_is_rate_limit_error(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="relay",
            messages=hello(),
            stream=True,
            extra_body={"sim": {"fail_status": 429, "retry_after": 7}},
        )
    assert caught.value.response.headers["retry-after"] == "7"


@pytest.mark.parametrize(("status", "expected"), [(500, 502), (503, 503)])
def test_upstream_5xx_is_server_error(client: OpenAI, status: int, expected: int) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(
            model="relay", messages=hello(), extra_body={"sim": {"fail_status": status}}
        )
    assert caught.value.status_code == expected


def test_unreachable_upstream_is_server_error(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="dead", messages=hello(), stream=True)
    assert caught.value.status_code in (502, 503)


def test_upstream_400_passes_through_as_bad_request(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="relay", messages=hello(), extra_body={"sim": {"fail_status": 400}}
        )


@pytest.mark.parametrize(
    ("model", "sim"),
    [("relay", {"fail_status": 408}), ("relay-slow", {"ttft_ms": 3000})],
    ids=["upstream-408", "read-timeout"],
)
def test_upstream_timeout_is_504(client: OpenAI, model: str, sim: dict[str, int]) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model=model, messages=hello(), stream=True, extra_body={"sim": sim}
        )
    assert caught.value.status_code == 504


def test_body_too_large_is_413(client: OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="sim", messages=hello("x" * 100_000))
    assert caught.value.status_code == 413


def test_failure_mid_stream_raises_not_a_clean_end(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="relay", messages=hello(), stream=True, extra_body={"sim": {"drop_after": 5}}
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk)
    assert len(received) >= 5
    assert "upstream" in caught.value.message
