"""The chat application API over real HTTP: /chat turns, conversations, branches,
the history window, stop and resume, errors."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest

from sluice.wire.sse import ServerSentEvent, SSEDecoder
from tests.chat_client import chat, get_json
from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess
from tests.test_streams import wait_for_disconnect
from tests.test_tenancy import request, tenants, two_keys  # noqa: F401 (fixtures)


async def conversation(gateway: ServerProcess, conversation_id: str) -> dict[str, Any]:
    data: dict[str, Any] = await get_json(f"{gateway.url}/v1/conversations/{conversation_id}")
    return data


async def test_a_turn_streams_named_events_and_is_saved(gateway: ServerProcess) -> None:
    stream = await chat(gateway.url, {"message": "Explain **SSE** retries", "model": "relay"})
    assert stream.status == 200
    kinds = [e.event for e in stream.events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "content" in kinds and "usage" in kinds
    ids = [int(e.id) for e in stream.events if e.id]
    assert ids == sorted(ids) and ids[0] >= 1, "ids are event sequence numbers, ascending"
    start, done = stream.start, stream.done
    assert done["content"] == stream.text and done["finish_reason"] == "stop"
    assert done["ttft_ms"] is not None and done["tokens_per_second"] is not None
    saved = await conversation(gateway, start["conversation_id"])
    assert saved["title"] == "Explain SSE retries"
    user, answer = saved["messages"]
    assert (user["role"], user["content"]) == ("user", "Explain **SSE** retries")
    assert answer["id"] == start["message_id"]
    assert answer["content"] == stream.text and answer["status"] == "complete"
    assert answer["finish_reason"] == "stop" and answer["model"] == "relay"
    assert answer["usage"]["completion_tokens"] > 0 and answer["ttft_ms"] is not None


async def test_next_turn_sends_history_and_system_prompt(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    first = await chat(
        gateway.url,
        {
            "message": "one",
            "model": "relay",
            "system": "Be terse.",
            "options": {"sim": {"key": key}},
        },
    )
    conversation_id = first.start["conversation_id"]
    await chat(
        gateway.url,
        {"conversation_id": conversation_id, "message": "two", "options": {"sim": {"key": key}}},
    )
    roles = upstream_saw(upstream, key)["roles"]
    assert roles[0] == ["system", "user"]
    assert roles[1] == ["system", "user", "assistant", "user"]
    assert upstream_saw(upstream, key)["prompts"] == ["one", "two"]


async def test_stateless_turn_stores_nothing(gateway: ServerProcess) -> None:
    stream = await chat(
        gateway.url, {"messages": [{"role": "user", "content": "echo me"}], "model": "relay-echo"}
    )
    assert stream.text == "echo me"
    assert stream.start["conversation_id"] is None


async def test_regenerate_and_edit_keep_versions(gateway: ServerProcess) -> None:
    first = await chat(gateway.url, {"message": "first question", "model": "relay-echo"})
    cid = first.start["conversation_id"]
    await chat(gateway.url, {"conversation_id": cid, "message": "second question"})
    again = await chat(gateway.url, {"conversation_id": cid, "regenerate": True})
    assert again.text == "second question"
    saved = await conversation(gateway, cid)
    last = saved["messages"][-1]
    assert last["id"] == again.start["message_id"]
    assert last["versions"]["count"] == 2 and last["versions"]["index"] == 1
    first_question = saved["messages"][0]
    edited = await chat(
        gateway.url,
        {"conversation_id": cid, "edit": {"message_id": first_question["id"], "content": "edited"}},
    )
    assert edited.text == "edited"
    saved = await conversation(gateway, cid)
    assert [m["content"] for m in saved["messages"]] == ["edited", "edited"]
    assert saved["messages"][0]["versions"]["count"] == 2
    # The earlier branch is kept: switch back to it.
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{gateway.url}/v1/conversations/{cid}", json={"leaf_id": last["id"]}
        ) as response,
    ):
        assert response.status == 200
    saved = await conversation(gateway, cid)
    assert [m["content"] for m in saved["messages"]] == [
        "first question",
        "first question",
        "second question",
        "second question",
    ]
    # Choosing a question's version shows its branch down to the newest answer.
    async with (
        aiohttp.ClientSession() as session,
        session.patch(
            f"{gateway.url}/v1/conversations/{cid}", json={"leaf_id": first_question["id"]}
        ) as response,
    ):
        assert response.status == 200
    saved = await conversation(gateway, cid)
    assert [m["content"] for m in saved["messages"]] == [
        "first question",
        "first question",
        "second question",
        "second question",
    ], "the newest answer under the first question, not the question alone"


async def test_history_window_drops_oldest_and_refuses_oversized(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    opts = {"sim": {"key": key}}
    first = await chat(
        gateway.url, {"message": "a " * 100, "model": "tiny-context", "options": opts}
    )
    cid = first.start["conversation_id"]
    for word in ("b", "c", "d"):
        await chat(
            gateway.url, {"conversation_id": cid, "message": f"{word} " * 100, "options": opts}
        )
    sent = upstream_saw(upstream, key)["roles"][-1]
    assert sent[-1] == "user" and sent[0] == "user", "never starts on an orphaned answer"
    # ~54 tokens a message against 300: the newest two exchanges fit, the oldest not.
    assert sent == ["user", "assistant", "user", "assistant", "user"]
    assert upstream_saw(upstream, key)["prompts"][-1].startswith("d d")
    before = await conversation(gateway, cid)
    refused = await chat(gateway.url, {"conversation_id": cid, "message": "z " * 700})
    assert refused.status == 400
    assert refused.error_body is not None
    assert refused.error_body["error"]["code"] == "context_length_exceeded"
    assert "300" in refused.error_body["error"]["message"]
    after = await conversation(gateway, cid)
    assert len(after["messages"]) == len(before["messages"]), "nothing stored"


async def test_stop_keeps_the_partial_answer(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    sim = {"tokens_per_second": 15, "key": key}
    body = {"message": "long one", "model": "relay", "options": {"sim": sim}}
    events: list[ServerSentEvent] = []
    async with aiohttp.ClientSession() as session:
        response = await session.post(gateway.url + "/chat", json=body)
        decoder = SSEDecoder()
        stopped = False
        async for piece in response.content.iter_any():
            events += decoder.feed(piece)
            if not stopped and sum(e.event == "content" for e in events) >= 4:
                stream_id = json.loads(events[0].data)["stream_id"]
                async with session.post(f"{gateway.url}/v1/streams/{stream_id}/cancel") as stop:
                    assert (await stop.json())["status"] == "cancelled"
                stopped = True
        response.close()
    frames = [json.loads(e.data) for e in events]
    done = frames[-1]
    assert done["type"] == "done" and done["finish_reason"] == "incomplete"
    text = "".join(f["content"] for f in frames if f["type"] == "content")
    assert done["content"] == text
    await wait_for_disconnect(upstream, key)
    await asyncio.sleep(0.2)
    saved = await conversation(gateway, frames[0]["conversation_id"])
    answer = saved["messages"][-1]
    assert answer["status"] == "incomplete" and answer["content"] == text
    assert answer["usage"]["estimated"] is True


async def test_resume_a_chat_stream_in_the_same_format(gateway: ServerProcess) -> None:
    body = {"message": "resume me", "model": "relay", "options": {"sim": {"tokens_per_second": 60}}}
    cut = await chat(gateway.url, body, stop_after=8)
    last = max(int(e.id) for e in cut.events if e.id)
    stream_id = cut.start["stream_id"]
    rest: list[ServerSentEvent] = []
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{gateway.url}/v1/streams/{stream_id}", headers={"Last-Event-ID": str(last)}
        ) as response,
    ):
        decoder = SSEDecoder()
        async for piece in response.content.iter_any():
            rest += decoder.feed(piece)
    frames = [json.loads(e.data) for e in rest]
    assert frames[0]["type"] == "start"
    assert int(rest[1].id) == last + 1
    done = frames[-1]
    assert done["type"] == "done"
    text = cut.text + "".join(f["content"] for f in frames if f["type"] == "content")
    assert text == done["content"]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({}, 400, "exactly one of"),
        ({"message": "a", "messages": [{"role": "user", "content": "b"}]}, 400, "exactly one of"),
        ({"message": "a", "options": {"frobnicate": 1}}, 400, "frobnicate"),
        ({"message": "a", "model": "nope"}, 404, "nope"),
        ({"conversation_id": "missing", "message": "a"}, 404, "missing"),
        ({"regenerate": True}, 400, "conversation_id"),
        ({"message": ""}, 400, "message"),
        ({"message": 5}, 400, "message"),
    ],
)
async def test_bad_turns_are_refused_with_clear_errors(
    gateway: ServerProcess, body: dict[str, Any], status: int, fragment: str
) -> None:
    stream = await chat(gateway.url, body)
    assert stream.status == status
    assert stream.error_body is not None
    assert fragment in stream.error_body["error"]["message"]


async def test_malformed_json_is_400(gateway: ServerProcess) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "/chat", data=b"{nope", headers={"Content-Type": "application/json"}
        ) as response,
    ):
        assert response.status == 400


async def test_conversations_rest(gateway: ServerProcess) -> None:
    # A word of its own: other modules' conversations on the shared gateway say "zanzibar".
    place = "Zanzibar" + new_key()
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{gateway.url}/v1/conversations",
            json={"title": f"{place} trip", "system_prompt": "You plan trips.", "model": "relay"},
        ) as response:
            created = await response.json()
        cid = created["id"]
        async with session.patch(
            f"{gateway.url}/v1/conversations/{cid}",
            json={"title": f"{place} in June", "options": {"temperature": 0.3}},
        ) as response:
            changed = await response.json()
        assert changed["title"] == f"{place} in June" and changed["options"] == {"temperature": 0.3}
        async with session.get(f"{gateway.url}/v1/conversations", params={"q": place.lower()}) as r:
            found = await r.json()
        assert [c["id"] for c in found["data"]] == [cid]
        async with session.patch(
            f"{gateway.url}/v1/conversations/{cid}", json={"model": "nope"}
        ) as response:
            assert response.status == 404
        async with session.patch(
            f"{gateway.url}/v1/conversations/{cid}", json={"colour": "red"}
        ) as response:
            assert response.status == 400
        async with session.delete(f"{gateway.url}/v1/conversations/{cid}") as response:
            assert (await response.json())["deleted"] is True
        async with session.get(f"{gateway.url}/v1/conversations/{cid}") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"


async def test_search_finds_message_text(gateway: ServerProcess) -> None:
    word = "quokka" + new_key()
    stream = await chat(gateway.url, {"message": f"tell me about the {word}", "model": "relay"})
    found = await get_json(f"{gateway.url}/v1/conversations?q={word}")
    assert [c["id"] for c in found["data"]] == [stream.start["conversation_id"]]


async def test_health_summary(gateway: ServerProcess) -> None:
    await chat(gateway.url, {"message": "count me", "model": "relay"})
    async with aiohttp.ClientSession() as session, session.get(gateway.url + "/health") as response:
        summary = await response.json()
    assert summary["requests_per_minute"] >= 1
    assert 0 <= summary["error_rate"] <= 1
    assert summary["ttft_ms"]["avg"] is not None and summary["ttft_ms"]["p95"] is not None
    assert summary["store"] == "ok"
    assert summary["upstreams"]["relay"] == "ok"
    assert "active_streams" in summary and summary["uptime_seconds"] > 0


async def test_bad_simulator_options_are_refused_before_anything_is_stored(
    gateway: ServerProcess,
) -> None:
    marker = "refused-before-storing-" + uuid.uuid4().hex[:8]
    async with aiohttp.ClientSession() as session:
        async with session.post(
            gateway.url + "/chat",
            json={"message": marker, "model": "sim", "options": {"sim": {"length": 10**11}}},
        ) as response:
            assert response.status == 400
            error = (await response.json())["error"]
            assert "sim.length" in error["message"]
        async with session.get(gateway.url + "/v1/conversations", params={"q": marker}) as r:
            assert (await r.json())["data"] == []


# --- continue generating (issue 18) ---------------------------------------------------------


async def test_continue_extends_a_cut_off_answer_in_place(
    gateway: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    sim = {"sim": {"key": key, "length": 60}}
    first = await chat(
        gateway.url, {"message": "tell me", "model": "relay", "options": {**sim, "max_tokens": 8}}
    )
    assert first.done["finish_reason"] == "length"
    cid, mid = first.start["conversation_id"], first.start["message_id"]
    before = first.done["content"]
    more = await chat(
        gateway.url,
        {"conversation_id": cid, "continue_id": mid, "options": {**sim, "max_tokens": 30}},
    )
    assert more.status == 200
    assert more.start["message_id"] == mid, "the same message, extended"
    new_text = more.text
    assert new_text and more.done["content"] == before + new_text
    # The model saw the partial answer and was asked to carry on from it.
    assert upstream_saw(upstream, key)["roles"][-1] == ["user", "assistant", "user"]
    assert upstream_saw(upstream, key)["prompts"][-1].startswith("Continue your previous answer")
    await asyncio.sleep(0.2)
    saved = await conversation(gateway, cid)
    assert [m["role"] for m in saved["messages"]] == ["user", "assistant"], "no new message"
    answer = saved["messages"][-1]
    assert answer["id"] == mid and answer["content"] == before + new_text
    assert answer["status"] == "complete"


async def test_continue_a_stopped_answer_over_the_websocket(gateway: ServerProcess) -> None:
    stopped = await chat(
        gateway.url,
        {"message": "long one", "model": "sim", "options": {"sim": {"tokens_per_second": 40}}},
        stop_after=6,
    )
    cid, mid = stopped.start["conversation_id"], stopped.start["message_id"]
    cancel = f"{gateway.url}/v1/streams/{stopped.start['stream_id']}/cancel"
    async with aiohttp.ClientSession() as session, session.post(cancel) as response:
        assert response.status == 200
    for _ in range(50):
        answer = (await conversation(gateway, cid))["messages"][-1]
        if answer["status"] == "incomplete":
            break
        await asyncio.sleep(0.1)
    assert answer["status"] == "incomplete" and answer["content"]
    before = answer["content"]
    ws_url = gateway.url.replace("http", "ws", 1) + "/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        await ws.send_json(
            {"type": "chat", "conversation_id": cid, "continue_id": mid, "options": {}}
        )
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] not in ("done", "error"):
            frames.append(await ws.receive_json(timeout=20))
    assert frames[0]["type"] == "start" and frames[0]["message_id"] == mid
    added = "".join(f["content"] for f in frames if f["type"] == "content")
    assert added and frames[-1]["content"] == before + added
    await asyncio.sleep(0.2)
    saved = (await conversation(gateway, cid))["messages"]
    assert len(saved) == 2 and saved[-1]["content"] == before + added


async def test_continue_refuses_what_cannot_be_continued(gateway: ServerProcess) -> None:
    done = await chat(gateway.url, {"message": "short", "model": "sim"})
    cid, mid = done.start["conversation_id"], done.start["message_id"]
    other = await chat(gateway.url, {"message": "elsewhere", "model": "sim"})
    cases = [
        ({"continue_id": mid}, 400, "conversation_id"),  # no conversation
        ({"conversation_id": cid, "continue_id": mid}, 400, "stopped, interrupted"),  # complete
        ({"conversation_id": cid, "continue_id": "nope"}, 404, "nope"),
        # Another conversation's answer is not found here, like one that never was.
        ({"conversation_id": cid, "continue_id": other.start["message_id"]}, 404, "No message"),
        ({"conversation_id": cid, "continue_id": mid, "message": "x"}, 400, "exactly one of"),
    ]
    for body, status, fragment in cases:
        refused = await chat(gateway.url, body)
        assert refused.status == status, body
        assert refused.error_body is not None
        assert fragment in refused.error_body["error"]["message"], refused.error_body


async def test_continue_and_search_snippets_are_owner_scoped(
    tenants: ServerProcess,  # noqa: F811
    two_keys: tuple[str, str],  # noqa: F811
) -> None:
    alice, bob = two_keys
    word = "wombat" + new_key()
    body = {"message": f"about the {word}", "model": "sim", "options": {"max_tokens": 5}}
    status, _ = await request(tenants, "POST", "/chat", alice, body)
    assert status == 200
    status, found = await request(tenants, "GET", f"/v1/conversations?q={word}", alice)
    (theirs,) = found["data"]
    assert word in theirs["snippet"]
    _, read = await request(tenants, "GET", f"/v1/conversations/{theirs['id']}", alice)
    answer = read["messages"][-1]
    assert answer["finish_reason"] == "length"
    # Bob neither finds it nor continues it: in her conversation or from one of his own.
    status, found = await request(tenants, "GET", f"/v1/conversations?q={word}", bob)
    assert found["data"] == []
    status, _ = await request(tenants, "POST", "/chat", bob, {"message": "mine", "model": "sim"})
    _, listed = await request(tenants, "GET", "/v1/conversations", bob)
    own = listed["data"][0]["id"]
    for cid in (theirs["id"], own):
        status, error = await request(
            tenants, "POST", "/chat", bob, {"conversation_id": cid, "continue_id": answer["id"]}
        )
        assert status == 404, error
    status, _ = await request(
        tenants,
        "POST",
        "/chat",
        alice,
        {"conversation_id": theirs["id"], "continue_id": answer["id"]},
    )
    assert status == 200


async def test_search_results_carry_a_snippet_of_the_match(gateway: ServerProcess) -> None:
    word = "Quokka" + new_key()
    filler = " ".join(f"word{i}" for i in range(60))
    message = f"{filler} the {word} lives on an island {filler}"
    stream = await chat(gateway.url, {"message": message, "model": "sim"})
    found = await get_json(f"{gateway.url}/v1/conversations?q={word.lower()}")
    (hit,) = found["data"]
    assert hit["id"] == stream.start["conversation_id"]
    snippet = hit["snippet"]
    assert word in snippet and snippet.startswith("…") and snippet.endswith("…")
    assert len(snippet) < 200 and "lives on an island" in snippet
    titled = await get_json(f"{gateway.url}/v1/conversations")
    assert "snippet" not in titled["data"][0], "only search results have one"
