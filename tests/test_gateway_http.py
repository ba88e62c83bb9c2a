"""The gateway over raw HTTP: exact wire format, headers, limits, errors, health."""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from sluice.wire.sse import SSEDecoder
from tests.servers import ServerProcess


async def post(
    gateway: ServerProcess, body: Any, *, raw: bytes | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "/v1/chat/completions",
            data=raw if raw is not None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        ) as response,
    ):
        return response.status, CIMultiDict(response.headers), await response.read()


def chat(content: str = "Explain backpressure", **extra: Any) -> dict[str, Any]:
    return {"model": "relay", "messages": [{"role": "user", "content": content}], **extra}


def records(body: bytes) -> list[str]:
    return [event.data for event in SSEDecoder().feed(body)]


@pytest.mark.parametrize("model", ["sim", "relay"])
async def test_stream_wire_format_is_exactly_openais(gateway: ServerProcess, model: str) -> None:
    status, headers, body = await post(gateway, chat(model=model, stream=True))
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert len(headers["x-sluice-stream-id"]) == 24
    text = body.decode()
    # Only `data:` lines and blank lines: an `id:`/`event:`/`retry:` line breaks the SDKs.
    for line in text.split("\n"):
        assert line == "" or line.startswith("data: ") or line.startswith(":"), line
    assert text.endswith("data: [DONE]\n\n")
    chunks = [json.loads(d) for d in records(body)[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {model}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_japanese_survives_every_chunk_boundary(gateway: ServerProcess) -> None:
    prompt = "日本語でストリーミングについて説明してください。絵文字も🎌どうぞ"
    status, _, body = await post(gateway, chat(prompt, model="relay-echo", stream=True))
    assert status == 200
    text = "".join(
        json.loads(d)["choices"][0]["delta"].get("content") or ""
        for d in records(body)[:-1]
        if json.loads(d)["choices"]
    )
    assert text == prompt
    status, _, body = await post(gateway, chat(prompt, model="relay", stream=True))
    answer = "".join(
        json.loads(d)["choices"][0]["delta"].get("content") or ""
        for d in records(body)[:-1]
        if json.loads(d)["choices"]
    )
    assert "\ufffd" not in answer
    assert any("\u3040" <= ch <= "\u30ff" for ch in answer), "a Japanese prompt gets Japanese"


async def test_malformed_json_is_400(gateway: ServerProcess) -> None:
    status, _, body = await post(gateway, None, raw=b'{"model": "sim", "messages": [')
    assert status == 400
    error = json.loads(body)["error"]
    # OpenAI's four fields, and the request's id (which the SDKs ignore).
    assert set(error) == {"message", "type", "param", "code", "request_id"}
    assert error["type"] == "invalid_request_error"
    assert "JSON" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "sim"}, "messages"),
        ({"model": "sim", "messages": []}, "messages"),
        ({"model": "sim", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "sim", "messages": [{"role": "user"}], "n": "2"}, "n"),
        ({"model": "sim", "messages": [{"role": "user"}], "temperature": 3}, "temperature"),
        ({"model": "sim", "messages": [{"role": "user"}], "stream": "yes"}, "stream"),
        ({"model": 7, "messages": [{"role": "user"}]}, "model"),
        (
            {
                "model": "sim",
                "messages": [{"role": "user"}],
                "stream_options": {"include_usage": True},
            },
            "stream_options",
        ),
    ],
)
async def test_invalid_fields_are_named(gateway: ServerProcess, body: Any, param: str) -> None:
    status, _, raw = await post(gateway, body)
    assert status == 400
    assert json.loads(raw)["error"]["param"] == param


async def test_non_object_body_is_400(gateway: ServerProcess) -> None:
    status, _, _ = await post(gateway, ["not", "an", "object"])
    assert status == 400


async def test_body_limit_is_413_and_nothing_starts(gateway: ServerProcess) -> None:
    status, _, raw = await post(gateway, chat("x" * 70_000))
    assert status == 413
    assert json.loads(raw)["error"]["code"] == "request_too_large"


async def test_get_on_completions_is_405(gateway: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.url + "/v1/chat/completions") as response,
    ):
        assert response.status == 405
        assert "error" in await response.json()


async def test_unknown_path_is_openai_shaped_404(gateway: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(gateway.url + "/v1/nothing-here") as response,
    ):
        assert response.status == 404
        assert (await response.json())["error"]["type"] == "invalid_request_error"


async def test_usage_is_asked_upstream_but_hidden_unless_requested(
    gateway: ServerProcess,
) -> None:
    _, _, plain = await post(gateway, chat(stream=True))
    assert all("usage" not in json.loads(d) for d in records(plain)[:-1])
    _, _, counted = await post(gateway, chat(stream=True, stream_options={"include_usage": True}))
    last = json.loads(records(counted)[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] > 0


async def test_mid_stream_failure_is_in_band_without_done(gateway: ServerProcess) -> None:
    status, _, body = await post(gateway, chat(stream=True, sim={"malformed_after": 3}))
    assert status == 200
    data = records(body)
    assert "[DONE]" not in data
    error = json.loads(data[-1])["error"]
    assert error["code"] == "upstream_protocol_error"
    # OpenAI's four fields, and what the operator can do (which the SDKs ignore).
    assert set(error) == {"message", "type", "param", "code", "hint"}


async def test_keepalive_comment_while_idle(gateway: ServerProcess) -> None:
    # keepalive_seconds is 1.0 in the test config; the upstream stalls 2.5 s mid-answer.
    sim = {"stall_after": 3, "stall_ms": 2500}
    status, _, body = await post(gateway, chat(stream=True, sim=sim))
    assert status == 200
    assert body.count(b": ping\n\n") >= 2
    assert body.endswith(b"data: [DONE]\n\n")
    decoded = records(body)
    assert decoded[-1] == "[DONE]"


async def test_request_fields_pass_through_to_upstream(gateway: ServerProcess) -> None:
    # The sim upstream honours `stop` and `max_tokens` only if the gateway forwarded them.
    _, _, body = await post(gateway, chat("say something", model="relay-echo", stop=["some"]))
    message = json.loads(body)["choices"][0]["message"]["content"]
    assert message == "say "


async def test_models_and_health(gateway: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(gateway.url + "/v1/models") as response:
            models = await response.json()
        assert models["object"] == "list"
        assert {"sim", "relay", "dead"} <= {m["id"] for m in models["data"]}
        async with session.get(gateway.url + "/v1/models/relay") as response:
            assert (await response.json())["id"] == "relay"
        async with session.get(gateway.url + "/v1/models/nope") as response:
            assert response.status == 404
        async with session.get(gateway.url + "/health/live") as response:
            assert response.status == 200
        started = time.monotonic()
        async with session.get(gateway.url + "/health/ready") as response:
            ready = await response.json()
        assert time.monotonic() - started < 6
    assert ready["upstreams"]["relay"] == "ok"
    assert ready["upstreams"]["sim"] == "ok"
    assert ready["upstreams"]["dead"] != "ok"
    assert ready["status"] == "degraded"


async def test_ready_spends_no_tokens(gateway: ServerProcess, upstream: ServerProcess) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(upstream.url + "/sim/stats") as response:
            before = (await response.json())["requests"]
        async with session.get(gateway.url + "/health/ready") as response:
            assert response.status == 200
        async with session.get(upstream.url + "/sim/stats") as response:
            after = (await response.json())["requests"]
    assert after == before


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": 5}],
        [{"type": "text"}],
        [{"type": "text", "text": None}],
        ["just a string"],
    ],
)
async def test_malformed_content_parts_are_400(gateway: ServerProcess, content: Any) -> None:
    status, _, raw = await post(
        gateway, {"model": "relay", "messages": [{"role": "user", "content": content}]}
    )
    assert status == 400
    assert json.loads(raw)["error"]["param"].startswith("messages[0].content")


async def test_resume_offset_must_be_plain_digits(gateway: ServerProcess) -> None:
    _, headers, _ = await post(gateway, chat(stream=True))
    stream_id = headers["x-sluice-stream-id"]
    async with aiohttp.ClientSession() as session:
        for bad in ("%C2%B2", "-1", "1e3", "9" * 40):
            async with session.get(f"{gateway.url}/v1/streams/{stream_id}?after={bad}") as response:
                assert response.status == 400, bad
