"""Read-only share links against the running gateway (authentication required): the owner
makes, lists and revokes them; anyone reads a live one without a key; another key, a
revoked link, a deleted conversation and any malformed token all get the same 404; the
database holds only the token's hash. Then the store alone, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sluice.errors import NotFound, RequestError
from sluice.store.conversations import Message, SQLStore, new_id
from sluice.store.database import async_url, create_engine, migrate
from sluice.store.keys import hash_key
from sluice.store.shares import ShareStore, new_token, well_formed
from tests.databases import postgres_database, sqlite_database
from tests.servers import ServerProcess, base_env, running

MASTER = "sk-master-" + "s" * 24
PUBLIC_HEADERS = {
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-robots-tag": "noindex, nofollow",
}


def auth(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


@pytest.fixture(scope="module")
def sharing(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[tuple[ServerProcess, Path]]:
    """A gateway that wants a key, and its SQLite file."""
    tmp = tmp_path_factory.mktemp("shares")
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(gateway_config)], tmp, name="shares", env=env) as s:
        yield s, tmp / "data" / "sluice.db"


@pytest.fixture
def server(sharing: tuple[ServerProcess, Path]) -> ServerProcess:
    return sharing[0]


async def call(
    server: ServerProcess, method: str, path: str, secret: str | None = None, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, server.url + path, json=body, headers=auth(secret)) as response,
    ):
        raw = await response.read()
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            return response.status, json.loads(raw) if raw else None, headers
        except ValueError:
            return response.status, raw, headers


async def new_key(server: ServerProcess, name: str) -> str:
    status, body, _ = await call(server, "POST", "/v1/admin/keys", MASTER, {"name": name})
    assert status == 200, body
    key: str = body["key"]
    return key


async def chatted(server: ServerProcess, secret: str) -> str:
    """A conversation with a system prompt and one finished turn: its id."""
    status, created, _ = await call(
        server,
        "POST",
        "/v1/conversations",
        secret,
        {"title": "Rivers", "model": "sim", "system_prompt": "SECRET-INSTRUCTION-42"},
    )
    assert status == 200, created
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/chat",
            json={"conversation_id": created["id"], "message": "Tell me about rivers"},
            headers=auth(secret),
        ) as response,
    ):
        assert response.status == 200, await response.text()
        await response.read()
    conversation_id: str = created["id"]
    return conversation_id


def assert_not_found(status: int, body: Any, what: str) -> None:
    assert status == 404, (what, status, body)
    assert set(body["error"]) >= {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == "not_found", body


async def test_create_read_without_a_key_list_revoke(server: ServerProcess) -> None:
    alice = await new_key(server, "alice")
    chat = await chatted(server, alice)
    status, share, _ = await call(server, "POST", f"/v1/conversations/{chat}/shares", alice)
    assert status == 201, share
    assert share["object"] == "conversation.share"
    assert share["conversation_id"] == chat and share["revoked_at"] is None
    token = share["token"]
    assert well_formed(token) and len(token) >= 32
    assert share["url"] == f"{server.url}/share/{token}"

    # Nobody signed in: the gateway wants a key for everything else...
    status, body, _ = await call(server, "GET", f"/v1/conversations/{chat}")
    assert status == 401, body
    # ...but the link opens the conversation, and only its questions and answers.
    status, shared, headers = await call(server, "GET", f"/v1/shared/{token}")
    assert status == 200, shared
    for name, value in PUBLIC_HEADERS.items():
        assert headers[name] == value
    assert shared["title"] == "Rivers" and shared["model"] == "sim"
    assert [m["role"] for m in shared["messages"]] == ["user", "assistant"]
    assert shared["messages"][0]["content"] == "Tell me about rivers"
    answer = shared["messages"][1]
    assert answer["content"] and answer["finish_reason"] == "stop"
    assert answer["status"] == "complete"
    assert set(answer) == {"role", "content", "model", "finish_reason", "status", "created_at"}
    text = json.dumps(shared)
    for private in ("SECRET-INSTRUCTION-42", "key:", "owner", "stream_id", "usage", chat):
        assert private not in text, private

    # The page that shows it is open too, locked down like the chat page.
    status, page, headers = await call(server, "GET", f"/share/{token}")
    assert status == 200 and b'src="/static/js/shared.js"' in page
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["cache-control"] == "no-store" and headers["x-robots-tag"].startswith("noindex")

    # The owner lists it (no token), then revokes it: the link is dead at once.
    status, listed, _ = await call(server, "GET", f"/v1/conversations/{chat}/shares", alice)
    assert status == 200
    assert [s["id"] for s in listed["data"]] == [share["id"]]
    assert token not in json.dumps(listed) and "token" not in listed["data"][0]
    status, revoked, _ = await call(
        server, "DELETE", f"/v1/conversations/{chat}/shares/{share['id']}", alice
    )
    assert status == 200 and revoked["revoked_at"] is not None
    status, body, headers = await call(server, "GET", f"/v1/shared/{token}")
    assert_not_found(status, body, "revoked")
    assert headers["cache-control"] == "no-store"
    status, listed, _ = await call(server, "GET", f"/v1/conversations/{chat}/shares", alice)
    assert listed["data"][0]["revoked_at"] == revoked["revoked_at"]
    # Revoking again changes nothing; an unknown link id is a 404.
    status, again, _ = await call(
        server, "DELETE", f"/v1/conversations/{chat}/shares/{share['id']}", alice
    )
    assert status == 200 and again["revoked_at"] == revoked["revoked_at"]
    status, body, _ = await call(server, "DELETE", f"/v1/conversations/{chat}/shares/nope", alice)
    assert_not_found(status, body, "unknown share")


async def test_another_key_cannot_make_list_or_revoke_links(server: ServerProcess) -> None:
    alice, bob = await new_key(server, "alice"), await new_key(server, "bob")
    chat = await chatted(server, alice)
    _, share, _ = await call(server, "POST", f"/v1/conversations/{chat}/shares", alice)
    base = f"/v1/conversations/{chat}/shares"
    for method, path in (
        ("POST", base),
        ("GET", base),
        ("DELETE", f"{base}/{share['id']}"),
    ):
        status, body, _ = await call(server, method, path, bob)
        assert_not_found(status, body, f"bob {method}")
        status, body, _ = await call(server, method, path)  # no key at all
        assert status == 401, body
    # Bob's revoke did nothing: the link still works, and only one exists.
    status, _, _ = await call(server, "GET", f"/v1/shared/{share['token']}")
    assert status == 200
    _, listed, _ = await call(server, "GET", base, alice)
    assert [s["revoked_at"] for s in listed["data"]] == [None]
    # Bob's own conversation's id with Alice's link id: not his to revoke either.
    bobs = await chatted(server, bob)
    status, body, _ = await call(
        server, "DELETE", f"/v1/conversations/{bobs}/shares/{share['id']}", bob
    )
    assert_not_found(status, body, "cross-conversation revoke")
    # The admin reaches any conversation, as with the conversation endpoints.
    status, made, _ = await call(server, "POST", base, MASTER)
    assert status == 201, made


async def test_deleting_the_conversation_kills_its_links(
    sharing: tuple[ServerProcess, Path],
) -> None:
    server, database = sharing
    alice = await new_key(server, "alice")
    chat = await chatted(server, alice)
    _, share, _ = await call(server, "POST", f"/v1/conversations/{chat}/shares", alice)
    status, _, _ = await call(server, "GET", f"/v1/shared/{share['token']}")
    assert status == 200
    status, _, _ = await call(server, "DELETE", f"/v1/conversations/{chat}", alice)
    assert status == 200
    status, body, _ = await call(server, "GET", f"/v1/shared/{share['token']}")
    assert_not_found(status, body, "deleted conversation")
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT count(*) FROM conversation_shares WHERE conversation_id = ?", (chat,)
        ).fetchone()
    assert rows == (0,), "the foreign key cascades"


async def test_the_token_is_stored_only_as_its_hash(sharing: tuple[ServerProcess, Path]) -> None:
    server, database = sharing
    alice = await new_key(server, "alice")
    chat = await chatted(server, alice)
    _, share, _ = await call(server, "POST", f"/v1/conversations/{chat}/shares", alice)
    token = share["token"]

    def logged() -> list[tuple[str, str]]:
        with closing(sqlite3.connect(database)) as db:
            return db.execute(
                "SELECT route, path FROM request_log WHERE route = 'shared'"
            ).fetchall()

    before = len(logged())
    # Read, so that the read is in the request log too (written within a second); the
    # page is not logged (as the chat page is not) but would be masked alike.
    assert (await call(server, "GET", f"/v1/shared/{token}"))[0] == 200
    assert (await call(server, "GET", f"/share/{token}"))[0] == 200
    for _ in range(100):
        if len(logged()) > before:
            break
        await asyncio.sleep(0.1)
    assert len(logged()) > before
    assert set(logged()) == {("shared", "/v1/shared/[token]")}
    with closing(sqlite3.connect(database)) as db:
        row = db.execute(
            "SELECT * FROM conversation_shares WHERE id = ?", (share["id"],)
        ).fetchone()
        dump = "\n".join(db.iterdump())
    assert row is not None
    assert hashlib.sha256(token.encode()).hexdigest() in row
    assert token not in dump, "neither the shares table nor the request log holds it"
    assert server.output().count(token) == 0, "nor the server's log"


@pytest.mark.parametrize(
    "token",
    [
        "x" * 32,  # the right shape, never issued
        "short",
        "a" * 65,  # longer than any token
        "a" * 9000,  # far longer: refused before hashing
        "has.dots.in.it.aaaaaaaaaaaaaaaaaaaa",
        "%F0%9F%98%80" * 8,
        "%FF%FE" + "a" * 30,  # not UTF-8
        "..%2F..%2Fetc%2Fpasswd-aaaaaaaaaaaa",  # another path altogether: no such route
    ],
)
async def test_malformed_and_huge_tokens_are_a_plain_404(server: ServerProcess, token: str) -> None:
    status, body, _ = await call(server, "GET", f"/v1/shared/{token}")
    assert status == 404, (status, body)
    assert body["error"]["type"] == "invalid_request_error", body
    # A NUL is refused before routing, as on every path: a 400, never a 500.
    status, body, _ = await call(server, "GET", f"/v1/shared/%00{token}")
    assert status in (400, 404), (status, body)


async def test_live_links_per_conversation_are_capped(server: ServerProcess) -> None:
    alice = await new_key(server, "alice")
    chat = await chatted(server, alice)
    base = f"/v1/conversations/{chat}/shares"
    made = []
    for _ in range(20):
        status, share, _ = await call(server, "POST", base, alice)
        assert status == 201, share
        made.append(share)
    status, body, _ = await call(server, "POST", base, alice)
    assert status == 409, body
    assert body["error"]["code"] == "too_many_shares"
    # Revoking one makes room for one.
    status, _, _ = await call(server, "DELETE", f"{base}/{made[0]['id']}", alice)
    assert status == 200
    status, share, _ = await call(server, "POST", base, alice)
    assert status == 201, share
    # Every link made is a different token.
    assert len({s["token"] for s in [*made, share]}) == 21


async def test_a_failed_answer_is_shared_as_failed(server: ServerProcess) -> None:
    """Its partial text stays, marked: a reader must not take it for a whole answer."""
    alice = await new_key(server, "alice")
    status, created, _ = await call(server, "POST", "/v1/conversations", alice, {"model": "sim"})
    assert status == 200, created
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            server.url + "/chat",
            json={
                "conversation_id": created["id"],
                "message": "Tell me about rivers",
                "options": {"sim": {"drop_after": 5}},
            },
            headers=auth(alice),
        ) as response,
    ):
        await response.read()
    status, share, _ = await call(
        server, "POST", f"/v1/conversations/{created['id']}/shares", alice
    )
    assert status == 201, share
    status, shared, _ = await call(server, "GET", f"/v1/shared/{share['token']}")
    assert status == 200, shared
    answer = shared["messages"][-1]
    assert answer["role"] == "assistant" and answer["status"] == "failed", answer
    assert "error" not in answer and "connection drop" not in json.dumps(shared)


async def test_links_made_at_once_cannot_pass_the_cap_together(server: ServerProcess) -> None:
    alice = await new_key(server, "alice")
    chat = await chatted(server, alice)
    base = f"/v1/conversations/{chat}/shares"
    answers = await asyncio.gather(*(call(server, "POST", base, alice) for _ in range(40)))
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [201] * 20 + [409] * 20, statuses
    status, listed, _ = await call(server, "GET", base, alice)
    assert status == 200, listed
    assert len([s for s in listed["data"] if s["revoked_at"] is None]) == 20


async def test_a_revoked_key_s_links_stop_working(server: ServerProcess) -> None:
    """A link speaks for its owner: once the owner's key is revoked (and nobody can
    revoke its links any more), they stop working too."""
    carol = await new_key(server, "carol")
    chat = await chatted(server, carol)
    status, share, _ = await call(server, "POST", f"/v1/conversations/{chat}/shares", carol)
    assert status == 201, share
    assert (await call(server, "GET", f"/v1/shared/{share['token']}"))[0] == 200
    status, keys, _ = await call(server, "GET", "/v1/admin/keys", MASTER)
    [key] = [k for k in keys["data"] if carol.startswith(k["prefix"]) and k["name"] == "carol"]
    status, body, _ = await call(server, "DELETE", f"/v1/admin/keys/{key['id']}", MASTER)
    assert status == 200, body
    status, body, _ = await call(server, "GET", f"/v1/shared/{share['token']}")
    assert_not_found(status, body, "a revoked key's link")


# --- the store alone, on both databases ------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[SQLStore, ShareStore]]:
    if request.param == "sqlite":
        engine = create_engine(async_url(sqlite_database(tmp_path)))
        await migrate(engine)
        yield SQLStore(engine), ShareStore(engine, max_live=2)
        await engine.dispose()
        return
    async with postgres_database() as url:
        engine = create_engine(async_url(url))
        await migrate(engine)
        yield SQLStore(engine), ShareStore(engine, max_live=2)
        await engine.dispose()


async def test_store_shows_the_current_branch_only(stores: tuple[SQLStore, ShareStore]) -> None:
    conversations, shares = stores
    chat = await conversations.create_conversation(owner="key:a", title="t", system_prompt="p")
    question = await conversations.add_message(Message(new_id(), chat.id, None, "user", "Q"))
    await conversations.add_message(Message(new_id(), chat.id, question.id, "assistant", "old"))
    await conversations.add_message(Message(new_id(), chat.id, question.id, "assistant", "new"))
    share, token = await shares.create(chat.id, ("key:a",))
    assert share.owner == "key:a"
    shared = await shares.shared(token)
    assert [(m.role, m.content) for m in shared.messages] == [("user", "Q"), ("assistant", "new")]
    with pytest.raises(NotFound):
        await shares.create(chat.id, ("key:b",))
    with pytest.raises(NotFound):
        await shares.shared(new_token())
    await shares.create(chat.id, None)
    with pytest.raises(RequestError) as refused:
        await shares.create(chat.id, None)
    assert refused.value.status == 409
    await shares.revoke(chat.id, share.id)
    with pytest.raises(NotFound):
        await shares.shared(token)
    assert hash_key(token) != token
    await conversations.delete_conversation(chat.id)
    assert await shares.shares(chat.id) == []


async def test_store_forgets_old_revoked_links(stores: tuple[SQLStore, ShareStore]) -> None:
    conversations, shares = stores
    chat = await conversations.create_conversation(owner="key:a", title="t")
    for _ in range(25):
        share, _ = await shares.create(chat.id, None)
        await shares.revoke(chat.id, share.id)
    kept = await shares.shares(chat.id)
    # The newest 20 revoked ones are kept, plus none live: the table stays bounded.
    assert 20 <= len(kept) <= 21
    assert all(s.revoked_at is not None for s in kept)
