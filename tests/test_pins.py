"""Pinned conversations: the store lists pinned ones first (newest pin first) on SQLite
and PostgreSQL without counting a pin as activity, and the API pins only the caller's
own conversations (another key gets 404, odd values a 400)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice.store.conversations import SQLStore
from sluice.store.database import async_url, create_engine, migrate
from tests.databases import postgres_database, sqlite_database
from tests.servers import ServerProcess, base_env, running
from tests.test_tenancy import MASTER, create_key, request


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLStore]:
    if request.param == "sqlite":
        engine = create_engine(async_url(sqlite_database(tmp_path)))
        await migrate(engine)
        sql = SQLStore(engine)
        yield sql
        await sql.aclose()
        return
    async with postgres_database() as url:
        engine = create_engine(async_url(url))
        await migrate(engine)
        sql = SQLStore(engine)
        yield sql
        await sql.aclose()


async def test_pinned_first_newest_pin_first(store: SQLStore) -> None:
    a = await store.create_conversation(owner="o", title="a")
    b = await store.create_conversation(owner="o", title="b")
    c = await store.create_conversation(owner="o", title="c")
    titles = [x.title for x in await store.conversations(owners=("o",))]
    assert titles == ["c", "b", "a"]

    pinned = await store.update_conversation(a.id, pinned_at=100.0)
    assert pinned.pinned_at == 100.0
    # Pinning is not activity: the conversation keeps its date.
    assert pinned.updated_at == a.updated_at
    await store.update_conversation(b.id, pinned_at=200.0)
    titles = [x.title for x in await store.conversations(owners=("o",))]
    assert titles == ["b", "a", "c"]
    # Paging keeps the same order.
    page = await store.conversations(owners=("o",), limit=1, offset=1)
    assert [x.title for x in page] == ["a"]
    # The latest first, pins aside (the terminal's "-c").
    latest = await store.conversations(owners=("o",), pinned_first=False)
    assert [x.title for x in latest] == ["c", "b", "a"]

    await store.update_conversation(b.id, pinned_at=None)
    titles = [x.title for x in await store.conversations(owners=("o",))]
    assert titles == ["a", "c", "b"]
    assert (await store.conversation(c.id)).pinned_at is None


@pytest.fixture(scope="module")
def pins_server(
    tmp_path_factory: pytest.TempPathFactory, gateway_config: Path
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("pins")
    env = base_env(SLUICE_MASTER_KEY=MASTER, SLUICE_DATA_DIR=str(tmp / "data"))
    with running(["serve", "--config", str(gateway_config)], tmp, name="pins", env=env) as s:
        yield s


async def create(server: ServerProcess, secret: str, title: str) -> dict[str, Any]:
    status, body = await request(server, "POST", "/v1/conversations", secret, {"title": title})
    assert status == 200, body
    assert body["pinned"] is False
    return dict(body)


async def titles(server: ServerProcess, secret: str) -> list[tuple[str, bool]]:
    status, body = await request(server, "GET", "/v1/conversations", secret)
    assert status == 200, body
    return [(c["title"], c["pinned"]) for c in body["data"]]


async def test_pin_over_the_api_is_owner_scoped(pins_server: ServerProcess) -> None:
    alice = (await create_key(pins_server, "alice"))["key"]
    bob = (await create_key(pins_server, "bob"))["key"]
    first = await create(pins_server, alice, "first")
    second = await create(pins_server, alice, "second")
    path = f"/v1/conversations/{first['id']}"

    # Another key cannot pin it, nor learn that it exists.
    status, body = await request(pins_server, "PATCH", path, bob, {"pinned": True})
    assert status == 404, body
    assert body["error"]["code"] == "not_found"
    assert await titles(pins_server, alice) == [("second", False), ("first", False)]

    status, body = await request(pins_server, "PATCH", path, alice, {"pinned": True})
    assert status == 200, body
    assert body["pinned"] is True and body["title"] == "first"
    assert body["updated_at"] == first["updated_at"]
    assert await titles(pins_server, alice) == [("first", True), ("second", False)]
    assert await titles(pins_server, bob) == []
    status, body = await request(pins_server, "GET", "/v1/conversations?pinned_first=false", alice)
    assert status == 200
    assert [c["title"] for c in body["data"]] == ["second", "first"]
    status, body = await request(pins_server, "GET", path, alice)
    assert status == 200 and body["pinned"] is True

    # The newest pin comes first; pinning again keeps a pin's place.
    spath = f"/v1/conversations/{second['id']}"
    status, _ = await request(pins_server, "PATCH", spath, alice, {"pinned": True})
    assert status == 200
    assert await titles(pins_server, alice) == [("second", True), ("first", True)]
    status, _ = await request(pins_server, "PATCH", path, alice, {"pinned": True})
    assert await titles(pins_server, alice) == [("second", True), ("first", True)]

    # Bob cannot unpin it either.
    status, _ = await request(pins_server, "PATCH", spath, bob, {"pinned": False})
    assert status == 404
    status, body = await request(pins_server, "PATCH", spath, alice, {"pinned": False})
    assert status == 200 and body["pinned"] is False
    assert await titles(pins_server, alice) == [("first", True), ("second", False)]

    # Only true or false.
    odd_values: list[Any] = [None, "yes", 1, [], {"a": 1}]
    for odd in odd_values:
        status, body = await request(pins_server, "PATCH", path, alice, {"pinned": odd})
        assert status == 400, (odd, body)
        assert "error" in body
    assert await titles(pins_server, alice) == [("first", True), ("second", False)]
