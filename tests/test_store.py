"""One contract suite for every store backend, run on a real SQLite file and a real
PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sluice.errors import NotFound
from sluice.store.conversations import Message, SQLStore, new_id
from sluice.store.database import async_url, create_engine, migrate
from sluice.store.keys import KeyStore
from tests.databases import postgres_database, sqlite_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SQLStore]:
    if request.param == "sqlite":
        engine = create_engine(async_url(sqlite_database(tmp_path)))
        await migrate(engine)
        await migrate(engine)  # migrations are idempotent
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


def message(conversation_id: str, parent: str | None, role: str, content: str) -> Message:
    return Message(new_id(), conversation_id, parent, role, content)


async def test_conversation_crud(store: SQLStore) -> None:
    created = await store.create_conversation(
        owner="anonymous",
        title="Plans",
        system_prompt="Be brief.",
        model="sim",
        options={"temperature": 0.2},
    )
    fetched = await store.conversation(created.id)
    assert fetched == created
    updated = await store.update_conversation(created.id, title="Trip plans", model="sim-echo")
    assert updated.title == "Trip plans" and updated.model == "sim-echo"
    assert updated.options == {"temperature": 0.2}
    assert updated.updated_at >= created.updated_at
    await store.delete_conversation(created.id)
    with pytest.raises(NotFound):
        await store.conversation(created.id)
    with pytest.raises(NotFound):
        await store.delete_conversation(created.id)
    with pytest.raises(NotFound):
        await store.update_conversation(created.id, title="x")


async def test_messages_in_order_with_metadata(store: SQLStore) -> None:
    conversation = await store.create_conversation(owner="anonymous", title="t")
    question = await store.add_message(message(conversation.id, None, "user", "Hi?"))
    answer = await store.add_message(
        Message(
            new_id(),
            conversation.id,
            question.id,
            "assistant",
            "",
            model="sim",
            status="streaming",
            stream_id="abc",
        )
    )
    saved = await store.update_message(
        answer.id,
        content="Hello!",
        status="complete",
        finish_reason="stop",
        prompt_tokens=5,
        completion_tokens=2,
        ttft_ms=12.5,
        duration_ms=80.0,
    )
    assert saved.content == "Hello!" and saved.finish_reason == "stop"
    path = await store.path(conversation.id)
    assert [(m.role, m.content) for m in path] == [("user", "Hi?"), ("assistant", "Hello!")]
    assert path[1].ttft_ms == 12.5 and path[1].completion_tokens == 2
    assert (await store.conversation(conversation.id)).leaf_id == answer.id


async def test_regenerate_and_edit_keep_branches(store: SQLStore) -> None:
    conversation = await store.create_conversation(owner="anonymous")
    q1 = await store.add_message(message(conversation.id, None, "user", "first question"))
    a1 = await store.add_message(message(conversation.id, q1.id, "assistant", "answer one"))
    q2 = await store.add_message(message(conversation.id, a1.id, "user", "second question"))
    a2 = await store.add_message(message(conversation.id, q2.id, "assistant", "answer two"))
    # Regenerate the last answer: a sibling of a2.
    a2b = await store.add_message(message(conversation.id, q2.id, "assistant", "answer two, v2"))
    assert [m.id for m in await store.siblings(a2.id)] == [a2.id, a2b.id]
    assert [m.content for m in await store.path(conversation.id)][-1] == "answer two, v2"
    # Edit the first question: a sibling of q1, with its own answer.
    q1b = await store.add_message(message(conversation.id, None, "user", "first, edited"))
    await store.add_message(message(conversation.id, q1b.id, "assistant", "fresh answer"))
    assert [m.content for m in await store.path(conversation.id)] == [
        "first, edited",
        "fresh answer",
    ]
    # The old branch is still there, whole.
    assert [m.content for m in await store.path(conversation.id, a2.id)] == [
        "first question",
        "answer one",
        "second question",
        "answer two",
    ]
    assert [m.id for m in await store.siblings(q1.id)] == [q1.id, q1b.id]
    # Switching branches is moving the leaf.
    await store.update_conversation(conversation.id, leaf_id=a2b.id)
    assert [m.content for m in await store.path(conversation.id)][-1] == "answer two, v2"


async def test_search_titles_and_text_in_any_language(store: SQLStore) -> None:
    alpha = await store.create_conversation(owner="anonymous", title="Rust async runtimes")
    beta = await store.create_conversation(owner="anonymous", title="Dinner")
    gamma = await store.create_conversation(owner="anonymous", title="旅行の計画")
    await store.add_message(message(beta.id, None, "user", "A recipe with 100% Tomatoes_x"))
    await store.add_message(message(gamma.id, None, "user", "京都で紅葉を見たい"))
    assert [c.id for c in await store.conversations(query="rust")] == [alpha.id]
    assert [c.id for c in await store.conversations(query="TOMATO")] == [beta.id]
    assert [c.id for c in await store.conversations(query="紅葉")] == [gamma.id]
    assert [c.id for c in await store.conversations(query="計画")] == [gamma.id]
    # LIKE wildcards in the query are literal characters.
    assert [c.id for c in await store.conversations(query="100%")] == [beta.id]
    assert [c.id for c in await store.conversations(query="s_x")] == [beta.id]
    assert await store.conversations(query="1%0") == []  # "%" is not a wildcard
    assert await store.conversations(query="s?x") == []
    listed = await store.conversations()
    assert [c.id for c in listed][:3] == [gamma.id, beta.id, alpha.id], "recent first"
    assert len(await store.conversations(limit=2)) == 2


async def test_deleting_a_conversation_deletes_its_messages(store: SQLStore) -> None:
    conversation = await store.create_conversation(owner="anonymous")
    stored = await store.add_message(message(conversation.id, None, "user", "bye"))
    await store.delete_conversation(conversation.id)
    with pytest.raises(NotFound):
        await store.message(stored.id)


async def test_message_needs_an_existing_conversation(store: SQLStore) -> None:
    with pytest.raises(NotFound):
        await store.add_message(message("nope", None, "user", "orphan"))


async def test_ping(store: SQLStore) -> None:
    await store.ping()


async def test_owners_see_only_their_own(store: SQLStore) -> None:
    mine = await store.create_conversation(owner="key:a", title="Mine")
    theirs = await store.create_conversation(owner="key:b", title="Theirs")
    a = ("key:a",)
    assert [c.id for c in await store.conversations(owners=a)] == [mine.id]
    assert [c.id for c in await store.conversations(owners=a, query="Theirs")] == []
    assert {c.id for c in await store.conversations()} == {mine.id, theirs.id}  # ANY
    assert (await store.conversation(mine.id, a)).owner == "key:a"
    # Another owner's conversation is exactly as absent as one that never existed.
    for call in (
        store.conversation(theirs.id, a),
        store.update_conversation(theirs.id, a, title="taken"),
        store.delete_conversation(theirs.id, a),
    ):
        with pytest.raises(NotFound) as caught:
            await call
        assert caught.value.message == f"No conversation with id {theirs.id!r}."
    untouched = await store.conversation(theirs.id)
    assert untouched.title == "Theirs"


async def test_auth_decision_is_stored_not_counted(store: SQLStore) -> None:
    keys = KeyStore(store.engine)
    assert await keys.auth_required() is False
    key, _ = await keys.create(name="only")
    assert await keys.auth_required() is True
    await keys.revoke(key.id)
    assert await keys.any_active() is False
    assert await keys.auth_required() is True  # revoking the last key opens nothing
    await keys.set_auth_required(False)
    assert await keys.auth_required() is False
