"""Bounded input: nothing a client sends can break storage or serve a 500.

The pure checks (``sluice.wire.storable``, the chat turn's parser, the request parser's
caps, the simulator's limits) are table-tested here; then every stored text field, path
and query parameter of a running gateway gets the values databases refuse — a NUL, an
unpaired surrogate, integers beyond any column, nesting past orjson's limit — on SQLite
and on PostgreSQL: each is a 4xx naming the field, nothing half-written stays behind,
and the listing everyone reads keeps working.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets

from sluice.chat.service import parse_turn
from sluice.errors import RequestError
from sluice.events import ToolCallDelta
from sluice.providers.sim.options import DEFAULT_MAX_LENGTH, SimLimits, SimOptions
from sluice.providers.sim.play import KEPT_KEYS, KEPT_PER_KEY, SimStats
from sluice.providers.sim.script import build_script
from sluice.wire.openai_request import chat_request_from_body
from sluice.wire.storable import Unstorable, check_json, text_problem
from tests.databases import postgres_database
from tests.servers import ServerProcess, base_env, running

MASTER = "sk-master-bounds-" + "q" * 20
AUTH = {"Authorization": f"Bearer {MASTER}"}
NUL = "a\x00b"
#: An unpaired surrogate; json.dumps writes it as the escape "\ud800".
SURROGATE = "a\ud800b"


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def refused(call: Any, *args: Any, **kwargs: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- the pure checks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "problem"),
    [("plain", None), ("日本語 ✓", None), (NUL, "NUL"), (SURROGATE, "surrogate"), ("\x01", None)],
)
def test_text_problem_names_what_no_database_holds(value: str, problem: str | None) -> None:
    found = text_problem(value)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_json_nests_at_most_32_levels_and_names_the_path() -> None:
    check_json(nested(31))  # 32 containers counting the outermost
    with pytest.raises(Unstorable) as caught:
        check_json({"x": [nested(31)]})
    assert caught.value.path == ".x[0]" + ".a" * 30
    assert "deeper than 32" in caught.value.problem


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": {"b": NUL}}, ".a.b"),
        ({"a": [1, SURROGATE]}, ".a[1]"),
        ({NUL: 1}, ".a\\x00b"),
        ({"n": float("nan")}, ".n"),
        ({"n": float("inf")}, ".n"),
        ({"n": 2**53 + 1}, ".n"),
        ({"n": -(2**64)}, ".n"),
        ({"s": {1, 2}}, ".s"),
    ],
)
def test_json_refuses_what_storage_cannot_hold(value: Any, path: str) -> None:
    with pytest.raises(Unstorable) as caught:
        check_json(value)
    assert caught.value.path == path


def test_json_size_is_measured_serialised() -> None:
    check_json({"s": "x" * 1000}, max_bytes=1010)
    with pytest.raises(Unstorable, match="limit is 1000"):
        check_json({"s": "x" * 1000}, max_bytes=1000)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"message": NUL}, "message"),
        ({"message": SURROGATE}, "message"),
        ({"message": "hi", "system": NUL}, "system"),
        ({"message": "hi", "model": NUL}, "model"),
        ({"message": "hi", "conversation_id": NUL}, "conversation_id"),
        ({"conversation_id": "c", "edit": {"message_id": "m", "content": NUL}}, "edit.content"),
        ({"conversation_id": "c", "edit": {"message_id": NUL, "content": "x"}}, "edit.message_id"),
        ({"message": "hi", "options": {"stop": [NUL]}}, "options.stop[0]"),
        ({"message": "hi", "options": {"seed": 2**60}}, "options.seed"),
        ({"message": "hi", "options": {"sim": nested(40)}}, "options.sim" + ".a" * 31),
    ],
)
def test_a_turn_refuses_unstorable_values_naming_the_field(
    body: dict[str, Any], param: str
) -> None:
    error = refused(parse_turn, body)
    assert error.status == 400 and error.param == param, error.message


def test_a_turn_options_size_limit_comes_from_the_settings() -> None:
    body = {"message": "hi", "options": {"stop": "x" * 600}}
    parse_turn(body)
    error = refused(parse_turn, body, max_json_bytes=512)
    assert error.param == "options" and "512" in error.message


def test_n_above_the_limit_is_400_naming_n() -> None:
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    assert chat_request_from_body({**body, "n": 8}, max_choices=8).n == 8
    error = refused(chat_request_from_body, {**body, "n": 9}, max_choices=8)
    assert error.param == "n" and "8" in error.message


def test_a_request_nested_past_what_can_be_sent_on_is_400_naming_the_path() -> None:
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "x": nested(80)}
    error = refused(chat_request_from_body, body)
    assert error.param == "x" + ".a" * 63


@pytest.mark.parametrize(
    ("table", "param"),
    [
        ({"length": DEFAULT_MAX_LENGTH + 1}, "sim.length"),
        ({"ttft_ms": 60_001}, "sim.ttft_ms"),
        ({"stall_ms": 10**9}, "sim.stall_ms"),
        ({"retry_after": 61}, "sim.retry_after"),
        ({"tokens_per_second": 0.01}, "sim.tokens_per_second"),
        ({"jitter": 5}, "sim.jitter"),
        ({"fail_status": 200}, "sim.fail_status"),
        ({"fail_status": 10**6}, "sim.fail_status"),
        ({"key": "k" * 201}, "sim.key"),
    ],
)
def test_a_request_may_not_ask_the_simulator_for_unbounded_work(
    table: dict[str, Any], param: str
) -> None:
    error = refused(SimOptions().merged, table, limits=SimLimits())
    assert error.param == param, error.message
    SimOptions().merged(table)  # the operator's own configuration is not a request


def test_the_simulator_accepts_requests_within_its_limits() -> None:
    options = SimOptions().merged(
        {"length": DEFAULT_MAX_LENGTH, "ttft_ms": 0, "tokens_per_second": 0, "stall_ms": 60_000},
        limits=SimLimits(),
    )
    assert options.length == DEFAULT_MAX_LENGTH


def test_an_echo_of_a_huge_prompt_is_cut_at_the_token_limit() -> None:
    body = {"messages": [{"role": "user", "content": "word " * 200_000}], "n": 2}
    script = build_script(body, SimOptions(style="echo"), max_length=500)
    assert script.usage.completion_tokens == 2 * 500
    assert [e.reason for e in script.steps[-1][:2]] == ["length", "length"]  # type: ignore[union-attr]


def test_a_tool_call_stays_bounded_whatever_the_schema() -> None:
    properties = {f"p{i}": {"type": "string"} for i in range(5000)}
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": "f", "parameters": {"properties": properties}}},
        {"type": "function", "function": {"name": "g", "parameters": {"properties": [1, 2]}}},
        {
            "type": "function",
            "function": {"name": "h", "parameters": {"properties": {"x": {"enum": {"a": 1}}}}},
        },
    ]
    prompt = "Call it for " + "A" + "b" * 100_000
    for name in ("f", "g", "h"):
        body = {
            "messages": [{"role": "user", "content": prompt}],
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": name}},
        }
        script = build_script(body, SimOptions(), max_length=300)
        pieces = [e for step in script.steps for e in step if isinstance(e, ToolCallDelta)]
        assert 1 <= len(pieces) <= 301
    chosen = {"type": "function", "function": "not an object"}
    body = {"messages": [{"role": "user", "content": "x"}], "tools": tools, "tool_choice": chosen}
    assert build_script(body, SimOptions(), max_length=300).steps


def test_the_simulators_statistics_stay_bounded() -> None:
    stats = SimStats()
    for index in range(KEPT_KEYS + 10):
        stats.attempt(f"k{index}", [{"role": "user", "content": "x"}])
    assert len(stats.by_key) == KEPT_KEYS and "k0" not in stats.by_key
    for _ in range(KEPT_PER_KEY + 10):
        stats.attempt("same", [{"role": "user", "content": "y" * 10_000}])
    kept = stats.snapshot()["keys"]["same"]  # type: ignore[index]
    assert len(kept["prompts"]) == KEPT_PER_KEY and len(kept["prompts"][-1]) == 4096
    assert stats.key("same").attempts == KEPT_PER_KEY + 10


# -- a running gateway, on both databases --------------------------------------------------

CONFIG = """
[[models]]
name = "sim"
provider = "sim"
options = { ttft_ms = 0, tokens_per_second = 0, length = 30 }
"""


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_gateway(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ServerProcess]:
    config = tmp_path / "bounds.toml"
    config.write_text(CONFIG)
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp_path / "data"))
    args = ["serve", "--config", str(config)]
    if request.param == "sqlite":
        with running(args, tmp_path, name="bounds", env=env) as server:
            yield server
        return
    async with postgres_database() as url:
        env["SLUICE_DATABASE_URL"] = url
        with running(args, tmp_path, name="bounds", env=env) as server:
            yield server


async def call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    # json.dumps writes lone surrogates as escapes, as a hostile client would send them.
    data = None if body is None else json.dumps(body).encode()
    headers = {**AUTH, "Content-Type": "application/json"} if data is not None else AUTH
    async with session.request(method, url, data=data, headers=headers) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


async def conversation_count(session: aiohttp.ClientSession, url: str) -> int:
    status, listing = await call(session, "GET", url + "/v1/conversations?limit=200")
    assert status == 200, listing
    return len(listing["data"])


async def test_stored_fields_refuse_unstorable_values_on_every_route(
    store_gateway: ServerProcess,
) -> None:
    url = store_gateway.url
    failures: list[str] = []
    async with aiohttp.ClientSession() as session:
        status, made = await call(session, "POST", url + "/v1/conversations", {"title": "ok"})
        assert status == 200, made
        cid = made["id"]
        status, _ = await call(
            session, "POST", url + "/chat", {"conversation_id": cid, "message": "q"}
        )
        assert status == 200
        status, tree = await call(session, "GET", f"{url}/v1/conversations/{cid}")
        question = tree["messages"][0]["id"]
        before = await conversation_count(session, url)

        cases: list[tuple[str, str, Any, str]] = []
        for bad in (NUL, SURROGATE):
            # orjson (the chat endpoint's parser) refuses a lone surrogate in the whole
            # body, before any field is looked at: a 400 with no field to name.
            turn = str if bad == NUL else (lambda _: None)
            for field in ("title", "system_prompt", "model"):
                cases.append(("POST", "/v1/conversations", {field: bad}, field))
                cases.append(("PATCH", f"/v1/conversations/{cid}", {field: bad}, field))
            cases += [
                ("POST", "/v1/conversations", {"options": {"k": bad}}, "options"),
                ("POST", "/v1/conversations", {"options": {bad: 1}}, "options"),
                ("PATCH", f"/v1/conversations/{cid}", {"options": {"k": [bad]}}, "options"),
                ("PATCH", f"/v1/conversations/{cid}", {"leaf_id": bad}, "leaf_id"),
                ("POST", "/v1/admin/keys", {"name": bad}, "name"),
                ("POST", "/v1/admin/keys", {"name": "k", "models": [bad]}, "models.0"),
                ("POST", "/v1/session", {"key": bad}, "key"),
                ("POST", "/chat", {"message": bad}, turn("message")),
                ("POST", "/chat", {"message": "hi", "system": bad}, turn("system")),
                (
                    "POST",
                    "/chat",
                    {"message": "hi", "conversation_id": bad},
                    turn("conversation_id"),
                ),
                ("POST", "/chat", {"conversation_id": cid, "message": bad}, turn("message")),
                (
                    "POST",
                    "/chat",
                    {"message": "hi", "options": {"stop": bad}},
                    turn("options.stop"),
                ),
                (
                    "POST",
                    "/chat",
                    {"conversation_id": cid, "edit": {"message_id": question, "content": bad}},
                    turn("edit.content"),
                ),
            ]
        cases += [
            ("POST", "/v1/conversations", {"options": nested(300)}, "options"),
            ("PATCH", f"/v1/conversations/{cid}", {"options": nested(33)}, "options"),
            # A null title was a row the database refused: a 503, as if it were down.
            ("PATCH", f"/v1/conversations/{cid}", {"title": None}, "title"),
            ("PATCH", f"/v1/conversations/{cid}", {"title": None, "pinned": True}, "title"),
            ("POST", "/v1/conversations", {"options": {"s": "x" * 20_000}}, "options"),
            ("POST", "/v1/conversations", {"options": {"n": 10**30}}, "options"),
            ("POST", "/chat", {"message": "hi", "options": {"sim": nested(300)}}, "options.sim"),
            # orjson reads an integer this size as a float: refused as not an integer.
            ("POST", "/chat", {"message": "hi", "options": {"max_tokens": 10**30}}, None),
            ("POST", "/v1/admin/keys", {"name": "k", "rpm": 10**30}, "rpm"),
            ("POST", "/v1/admin/keys", {"name": "k", "models": ["sim"] * 1000}, "models"),
        ]
        for method, path, body, param in cases:
            status, answer = await call(session, method, url + path, body)
            error = answer.get("error", {}) if isinstance(answer, dict) else {}
            got = error.get("param")
            expected = param if param is not None else got
            if status != 400 or not str(got).startswith(str(expected)):
                failures.append(f"{method} {path} {str(body)[:80]!r}: {status} {str(answer)[:200]}")

        # Paths and queries reach the database too; a NUL or broken UTF-8 in them is a
        # 4xx (400 or "not found"), never a driver error.
        for bad in ("a%00b", "%ED%A0%80", "%FF", "%C0%80"):
            for method, path in [
                ("GET", f"/v1/conversations/{bad}"),
                ("PATCH", f"/v1/conversations/{bad}"),
                ("DELETE", f"/v1/conversations/{bad}"),
                ("GET", f"/v1/conversations/{bad}/messages"),
                ("DELETE", f"/v1/admin/keys/{bad}"),
                ("GET", f"/v1/streams/{bad}"),
                ("POST", f"/v1/streams/{bad}/cancel"),
                ("GET", f"/v1/models/{bad}"),
                ("GET", f"/static/{bad}"),
            ]:
                body = {"title": "t"} if method == "PATCH" else None
                status, answer = await call(session, method, url + path, body)
                if not 400 <= status < 500:
                    failures.append(f"{method} {path}: {status} {str(answer)[:200]}")
            # A search term with broken UTF-8 is a search for U+FFFD; one with a NUL, a 400.
            status, answer = await call(session, "GET", f"{url}/v1/conversations?q={bad}")
            if status != (400 if bad == "a%00b" else 200):
                failures.append(f"GET ?q={bad}: {status} {str(answer)[:200]}")
        for path in ("/v1/conversations?offset=" + "9" * 30, "/v1/conversations?limit=" + "9" * 30):
            status, answer = await call(session, "GET", url + path)
            if status != 400:
                failures.append(f"GET {path}: {status} {str(answer)[:200]}")

        assert not failures, "\n".join(failures)
        # Nothing half-written: refused turns left no conversation, the listing works.
        assert await conversation_count(session, url) == before
        status, tree = await call(session, "GET", f"{url}/v1/conversations/{cid}")
        assert status == 200 and len(tree["messages"]) == 2
    assert "Traceback" not in store_gateway.output(), store_gateway.output()[-4000:]


async def test_caps_on_choices_and_simulated_length(store_gateway: ServerProcess) -> None:
    url = store_gateway.url + "/v1/chat/completions"
    base = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession() as session:
        status, answer = await call(session, "POST", url, {**base, "n": 9})
        assert status == 400 and answer["error"]["param"] == "n"
        status, answer = await call(session, "POST", url, {**base, "n": 8})
        assert status == 200 and len(answer["choices"]) == 8
        too_long = {**base, "sim": {"length": DEFAULT_MAX_LENGTH + 1}}
        status, answer = await call(session, "POST", url, too_long)
        assert status == 400 and "sim.length" in answer["error"]["message"]
        status, answer = await call(session, "POST", url, {**base, "sim": {"ttft_ms": 10**9}})
        assert status == 400 and "sim.ttft_ms" in answer["error"]["message"]


async def test_a_websocket_turn_with_unstorable_text_stores_nothing(
    store_gateway: ServerProcess,
) -> None:
    async with aiohttp.ClientSession() as session:
        before = await conversation_count(session, store_gateway.url)
        async with websockets.connect(
            f"ws://127.0.0.1:{store_gateway.port}/ws", additional_headers=AUTH
        ) as ws:
            for frame in (
                {"type": "chat", "message": NUL},
                {"type": "chat", "message": "hi", "system": NUL},
                {"type": "chat", "message": "hi", "options": {"sim": nested(40)}},
            ):
                await ws.send(json.dumps(frame))
                answer = json.loads(await ws.recv())
                assert answer["type"] == "error" and answer["error_type"] == "invalid_request_error"
                assert answer["param"] in ("message", "system") or answer["param"].startswith(
                    "options.sim"
                )
        assert await conversation_count(session, store_gateway.url) == before


async def test_sluice_sim_caps_length_with_a_flag(tmp_path: Path) -> None:
    args = ["sim", "--length", "50", "--max-length", "100"]
    with running(args, tmp_path, name="sim", health="/health") as sim:
        url = sim.url + "/v1/chat/completions"
        body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as session:
            status, answer = await call(session, "POST", url, {**body, "sim": {"length": 101}})
            assert status == 400 and "sim.length" in answer["error"]["message"], answer
            fine = {**body, "sim": {"length": 100, "ttft_ms": 0, "tokens_per_second": 0}}
            status, answer = await call(session, "POST", url, fine)
            assert status == 200, answer
            status, answer = await call(session, "POST", url, {**body, "n": 9})
            assert status == 400 and answer["error"]["param"] == "n"
