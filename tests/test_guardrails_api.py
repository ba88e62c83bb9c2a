"""Guardrails against a running gateway and a real `sluice sim` upstream: an input block
is a 400 and the upstream sees no call; PII the model writes across chunk boundaries
reaches the client masked, in order, with nothing of the original; a block mid-stream
ends the answer in-band with `content_filter` (and stops the upstream); full-width and
kana variants match; conversations store the masked text; `/v1/moderations` answers in
OpenAI's shape; a moderation upstream can block; flags are counted in `/metrics`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import OpenAI

from tests.faults import new_key, upstream_saw
from tests.servers import ServerProcess, base_env, running

CONFIG = """
guardrail_window = 32

[[models]]
name = "sim"
provider = "sim"
options = {{ ttft_ms = 0, tokens_per_second = 2000, length = 40 }}

[[models]]
name = "echo"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim-echo"

[[models]]
name = "relay"
provider = "openai"
base_url = "{upstream}/v1"
upstream_model = "sim"

[[guardrails]]
name = "pii-in"
kind = "pii"
action = "mask"
applies_to = ["input"]
models = ["sim", "relay"]

[[guardrails]]
name = "pii-out"
kind = "pii"
action = "mask"
applies_to = ["output"]

[[guardrails]]
name = "banned"
kind = "keywords"
words = ["forbidden-word", "ばくだん"]
category = "banned"
applies_to = ["input"]

[[guardrails]]
name = "stop-it"
kind = "keywords"
words = ["explode now"]
applies_to = ["output"]

[[guardrails]]
name = "watch"
kind = "keywords"
words = ["watchword"]
action = "flag"

[[guardrails]]
name = "modapi"
kind = "moderation_api"
base_url = "{upstream}/v1"
applies_to = ["input"]
models = ["relay"]
"""


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, upstream: ServerProcess
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("guarded")
    config = tmp / "guarded.toml"
    config.write_text(CONFIG.format(upstream=upstream.url))
    env = base_env(SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(config)], tmp, name="guarded", env=env) as server:
        yield server


async def post(server: ServerProcess, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(server.url + path, json=body) as r:
        return r.status, await r.json()


async def stream_texts(server: ServerProcess, body: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """The content pieces of a streamed chat completion, and its finish reasons."""
    pieces: list[str] = []
    reasons: list[Any] = []
    async with (
        aiohttp.ClientSession() as session,
        session.post(server.url + "/v1/chat/completions", json={**body, "stream": True}) as r,
    ):
        assert r.status == 200, await r.text()
        async for line in r.content:
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            for choice in chunk["choices"]:
                if choice["delta"].get("content"):
                    pieces.append(choice["delta"]["content"])
                if choice.get("finish_reason"):
                    reasons.append(choice["finish_reason"])
    return pieces, reasons


@pytest.mark.parametrize(
    "text",
    [
        "please use the forbidden-word now",
        "please use the ＦＯＲＢＩＤＤＥＮ－ＷＯＲＤ now",
        "バクダンの作り方",
        "ﾊﾞｸﾀﾞﾝの作り方",
    ],
)
async def test_an_input_block_is_400_and_nothing_goes_upstream(
    guarded: ServerProcess, upstream: ServerProcess, text: str
) -> None:
    key = new_key()
    status, body = await post(
        guarded,
        "/v1/chat/completions",
        {
            "model": "echo",
            "messages": [{"role": "system", "content": "hi"}, {"role": "user", "content": text}],
            "sim": {"key": key},
        },
    )
    assert status == 400
    error = body["error"]
    assert error["code"] == "content_filter"
    assert error["param"] == "messages[1].content"
    assert "banned" in error["message"]
    assert text not in json.dumps(body)
    assert upstream_saw(upstream, key)["attempts"] == 0


SECRETS = "Write to jane.doe@example.com or pay with card 4111 1111 1111 1111 please, thanks"


async def test_pii_written_across_chunks_reaches_the_client_masked(guarded: ServerProcess) -> None:
    pieces, reasons = await stream_texts(
        guarded, {"model": "echo", "messages": [{"role": "user", "content": SECRETS}]}
    )
    assert "".join(pieces) == "Write to [EMAIL] or pay with card [CARD] please, thanks"
    assert reasons == ["stop"]
    assert len(pieces) > 2  # it streamed: the text before the window went out early
    for piece in pieces:
        assert "@" not in piece and "1111" not in piece and "jane" not in piece
    status, whole = await post(
        guarded,
        "/v1/chat/completions",
        {"model": "echo", "messages": [{"role": "user", "content": SECRETS}]},
    )
    assert status == 200
    assert (
        whole["choices"][0]["message"]["content"]
        == "Write to [EMAIL] or pay with card [CARD] please, thanks"
    )


async def test_a_block_mid_stream_ends_it_with_content_filter(
    guarded: ServerProcess, upstream: ServerProcess
) -> None:
    key = new_key()
    text = (
        "one two three four five six seven eight nine ten then explode now and more words after it"
    )
    pieces, reasons = await stream_texts(
        guarded,
        {
            "model": "echo",
            "messages": [{"role": "user", "content": text}],
            "sim": {"key": key, "tokens_per_second": 50},
        },
    )
    assert reasons == ["content_filter"]
    written = "".join(pieces)
    assert written.startswith("one two three")
    assert "explode" not in written and "after" not in written
    # The rest was not read: the upstream saw the gateway leave.
    assert upstream_saw(upstream, key)["disconnected"] == 1


async def test_the_responses_api_reports_the_block(guarded: ServerProcess) -> None:
    status, body = await post(
        guarded, "/v1/responses", {"model": "echo", "input": "so explode now please"}
    )
    assert status == 200
    assert body["status"] == "incomplete"
    assert body["incomplete_details"] == {"reason": "content_filter"}
    assert "explode" not in json.dumps(body)


async def test_conversations_store_the_masked_text(guarded: ServerProcess) -> None:
    # "sim" has an input mask: the question is stored masked. "echo" has only the output
    # mask: the question is kept as asked, the answer that repeats it is stored masked.
    async with aiohttp.ClientSession() as session:
        for model, question, role in (
            ("sim", "my mail is bob@example.org", "user"),
            ("echo", SECRETS, "assistant"),
        ):
            async with session.post(
                guarded.url + "/chat", json={"message": question, "model": model}
            ) as r:
                assert r.status == 200
                raw = await r.text()
            start = next(
                json.loads(line[6:]) for line in raw.splitlines() if '"conversation_id"' in line
            )
            async with session.get(
                f"{guarded.url}/v1/conversations/{start['conversation_id']}"
            ) as r:
                messages = (await r.json())["messages"]
            stored = next(m["content"] for m in messages if m["role"] == role)
            assert "[EMAIL]" in stored and "@example" not in stored and "4111" not in stored
            if role == "assistant":
                assert "@example" not in raw  # nor in what the client was sent


async def test_a_moderation_upstream_blocks_input(
    guarded: ServerProcess, upstream: ServerProcess
) -> None:
    before = await _moderations(upstream)
    status, body = await post(
        guarded,
        "/v1/chat/completions",
        {"model": "relay", "messages": [{"role": "user", "content": "how to build a BOMB"}]},
    )
    assert status == 400
    assert body["error"]["code"] == "content_filter"
    assert "violence" in body["error"]["message"]
    status, _ = await post(
        guarded,
        "/v1/chat/completions",
        {"model": "relay", "messages": [{"role": "user", "content": "how to build a boat"}]},
    )
    assert status == 200
    assert await _moderations(upstream) == before + 2


async def _moderations(upstream: ServerProcess) -> int:
    async with aiohttp.ClientSession() as session, session.get(upstream.url + "/sim/stats") as r:
        return int((await r.json())["moderations"])


def test_the_moderations_endpoint_speaks_openais_shape(guarded: ServerProcess) -> None:
    client = OpenAI(base_url=guarded.url + "/v1", api_key="sk-x", max_retries=0)
    result = client.moderations.create(
        input=["a forbidden-word here", "mail me: a@b.io", "a harmless line", "a bomb"]
    )
    banned, mail, harmless, bomb = result.results
    assert banned.flagged and banned.categories.model_dump()["banned"] is True
    assert mail.flagged and mail.category_scores.model_dump()["pii/email"] == 1.0
    assert not harmless.flagged
    assert not any(harmless.categories.model_dump().values())
    # The moderation upstream applies to one model only: the endpoint asks it anyway.
    assert bomb.flagged


async def test_flags_and_masks_are_counted(guarded: ServerProcess) -> None:
    status, _ = await post(
        guarded,
        "/v1/chat/completions",
        {"model": "echo", "messages": [{"role": "user", "content": "the watchword is here"}]},
    )
    assert status == 200
    async with aiohttp.ClientSession() as session, session.get(guarded.url + "/metrics") as r:
        metrics = await r.text()
    assert 'sluice_guardrail_matches_total{action="flag",direction="input",rule="watch"}' in metrics
    assert (
        'sluice_guardrail_matches_total{action="flag",direction="output",rule="watch"}' in metrics
    )


def test_a_bad_guardrail_config_is_refused_at_start(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[[guardrails]]\nname = "x"\nkind = "regex"\npatterns = ["("]\n')
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "sluice", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=base_env(SLUICE_DATA_DIR=str(tmp_path / "d")),
        check=False,
    )
    assert result.returncode == 2
    assert "does not compile" in result.stderr


async def test_a_stored_response_keeps_only_masked_input(guarded: ServerProcess) -> None:
    status, body = await post(
        guarded,
        "/v1/responses",
        {
            "model": "sim",
            "instructions": "reply to ann@example.com",
            "input": "I am bo@example.net",
        },
    )
    assert status == 200
    assert body["instructions"] == "reply to [EMAIL]"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{guarded.url}/v1/responses/{body['id']}") as r:
            stored = await r.text()
        continued = {"model": "sim", "input": "and?", "previous_response_id": body["id"]}
        async with session.post(guarded.url + "/v1/responses", json=continued) as r:
            assert r.status == 200
    assert "@example" not in stored


async def test_moderation_checks_count_against_the_keys_requests_per_minute(
    tmp_path: Path, upstream: ServerProcess
) -> None:
    """A check runs the rules (and may call a moderation upstream): it is a request,
    and a key's requests per minute bound it like any other."""
    config = tmp_path / "g.toml"
    config.write_text(CONFIG.format(upstream=upstream.url))
    master = "sk-master-" + new_key() * 2
    env = base_env(SLUICE_MASTER_KEY=master, SLUICE_DATA_DIR=str(tmp_path / "data"))
    with running(["serve", "--config", str(config)], tmp_path, name="rpm", env=env) as server:
        async with aiohttp.ClientSession() as session:
            async with session.post(
                server.url + "/v1/admin/keys",
                json={"name": "checks", "rpm": 2},
                headers={"Authorization": f"Bearer {master}"},
            ) as response:
                assert response.status == 200, await response.text()
                key = (await response.json())["key"]
            statuses = []
            for _ in range(3):
                async with session.post(
                    server.url + "/v1/moderations",
                    json={"input": "mail me: a@b.io"},
                    headers={"Authorization": f"Bearer {key}"},
                ) as response:
                    statuses.append(response.status)
                    body = await response.json()
                    remaining = response.headers.get("x-ratelimit-remaining-requests")
            assert statuses == [200, 200, 429]
            assert body["error"]["code"] == "rate_limit_exceeded"
            assert remaining == "0"
