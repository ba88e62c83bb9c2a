"""The conversations REST API: list and search, create, read with messages and their
versions, update (title, system prompt, model, options, shown branch, pinned), delete."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from sluice.engine.engine import Engine
from sluice.errors import PermissionDenied, RequestError
from sluice.http.attachments import attachment_summaries
from sluice.http.gate import principal_of
from sluice.http.validation import MAX_INT, JsonObject, Text
from sluice.owners import visible_to
from sluice.policy.access import Principal
from sluice.store.conversations import (
    ANY,
    Conversation,
    ConversationStore,
    Message,
    Owners,
    branch,
)
from sluice.wire.storable import Unstorable, check_json


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Text = Field(default="", max_length=500)
    system_prompt: Text | None = None
    model: Text | None = None
    options: JsonObject = Field(default_factory=dict)


class ConversationChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Text | None = Field(default=None, max_length=500)
    system_prompt: Text | None = None
    model: Text | None = None
    options: JsonObject | None = None
    #: Show another branch: the id of the message to make the conversation's tip.
    leaf_id: Text | None = None
    #: Pin it to the top of the owner's list (newest pin first), or unpin it.
    pinned: StrictBool | None = None


def reach(principal: Principal) -> Owners:
    """Whose conversations a principal may reach by id: its own, or any (the admin and
    the local CLI user)."""
    return ANY if principal.admin else visible_to(principal.owner)


def listing(principal: Principal, owner: str | None, everyone: bool) -> Owners:
    """Whose conversations a list shows: the principal's own, unless the admin asks
    explicitly for one owner's (``?owner=``) or everyone's (``?all=true``)."""
    if owner is None and not everyone:
        return visible_to(principal.owner)
    if not principal.admin:
        raise PermissionDenied("Only the admin may list other owners' conversations.")
    if everyone:
        return ANY
    assert owner is not None
    return (owner,)


def conversation_object(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.id,
        "object": "conversation",
        "owner": conversation.owner,
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "model": conversation.model,
        "options": conversation.options,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "pinned": conversation.pinned_at is not None,
        "pinned_at": conversation.pinned_at,
    }


def message_object(message: Message, versions: list[str] | None = None) -> dict[str, Any]:
    usage = None
    if message.completion_tokens is not None or message.prompt_tokens is not None:
        prompt = message.prompt_tokens or 0
        completion = message.completion_tokens or 0
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "estimated": message.usage_estimated,
            "cached": message.cached,
        }
    ids = versions or [message.id]
    return {
        "id": message.id,
        "object": "conversation.message",
        "parent_id": message.parent_id,
        "role": message.role,
        "content": message.content,
        "model": message.model,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "usage": usage,
        "ttft_ms": message.ttft_ms,
        "duration_ms": message.duration_ms,
        "stream_id": message.stream_id,
        "error": message.error,
        "attachments": attachment_summaries(message),
        "created_at": message.created_at,
        "versions": {"index": ids.index(message.id), "count": len(ids), "ids": ids},
    }


def messages_with_versions(tree: list[Message], path: list[Message]) -> list[dict[str, Any]]:
    places: dict[tuple[str | None, str], list[str]] = defaultdict(list)
    for message in tree:
        places[(message.parent_id, message.role)].append(message.id)
    return [message_object(m, places[(m.parent_id, m.role)]) for m in path]


def newest_leaf(tree: list[Message], start: str) -> str:
    """Follow the newest child from ``start`` down to a message with none."""
    children: dict[str, list[Message]] = defaultdict(list)
    for message in tree:  # oldest first, so the last child is the newest
        if message.parent_id is not None:
            children[message.parent_id].append(message)
    current = start
    while children.get(current):
        current = children[current][-1].id
    return current


def build_router(store: ConversationStore, engine: Engine) -> APIRouter:
    router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

    def known_model(model: str | None) -> None:
        if model is not None:
            engine.provider(model)

    def sized(options: dict[str, Any]) -> dict[str, Any]:
        # The configured limit (the field type checks against the default).
        try:
            return dict(check_json(options, max_bytes=engine.settings.max_json_bytes))
        except Unstorable as exc:
            raise RequestError(f"Invalid value for 'options': {exc}", param="options") from None

    @router.get("")
    async def list_conversations(
        request: Request,
        q: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
        owner: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
        all: Annotated[bool, Query()] = False,
        pinned_first: Annotated[bool, Query()] = True,
    ) -> dict[str, Any]:
        owners = listing(principal_of(request.scope), owner, all)
        found = await store.conversations(
            owners=owners, query=q, limit=limit, offset=offset, pinned_first=pinned_first
        )
        data = [conversation_object(c) for c in found]
        if q:
            # Why each was found: the text around the match (None: its title matched).
            snippets = await store.snippets([c.id for c in found], q)
            for item in data:
                item["snippet"] = snippets.get(item["id"])
        return {"object": "list", "data": data}

    @router.post("")
    async def create(body: NewConversation, request: Request) -> dict[str, Any]:
        known_model(body.model)
        conversation = await store.create_conversation(
            owner=principal_of(request.scope).owner,
            title=body.title,
            system_prompt=body.system_prompt,
            model=body.model,
            options=sized(body.options),
        )
        return {**conversation_object(conversation), "messages": []}

    @router.get("/{conversation_id}")
    async def read(conversation_id: str, request: Request) -> dict[str, Any]:
        owners = reach(principal_of(request.scope))
        conversation = await store.conversation(conversation_id, owners)
        tree = await store.tree(conversation_id)
        return {
            **conversation_object(conversation),
            "messages": messages_with_versions(tree, branch(tree, conversation.leaf_id)),
        }

    @router.get("/{conversation_id}/messages")
    async def list_messages(conversation_id: str, request: Request) -> dict[str, Any]:
        conversation = await store.conversation(conversation_id, reach(principal_of(request.scope)))
        tree = await store.tree(conversation_id)
        path = branch(tree, conversation.leaf_id)
        return {"object": "list", "data": messages_with_versions(tree, path)}

    @router.patch("/{conversation_id}")
    async def change(
        conversation_id: str, body: ConversationChanges, request: Request
    ) -> dict[str, Any]:
        owners = reach(principal_of(request.scope))
        current = await store.conversation(conversation_id, owners)  # 404 before anything else
        changes = body.model_dump(exclude_unset=True)
        if "title" in changes and changes["title"] is None:
            # A conversation always has a title (empty is allowed); null is a client error,
            # not a row the database refuses.
            raise RequestError('title cannot be null; send "" for none.', param="title")
        known_model(changes.get("model"))
        if "leaf_id" in changes:
            leaf = changes["leaf_id"]
            if leaf is None:
                raise RequestError("leaf_id cannot be null.", param="leaf_id")
            # Unknown and another conversation's look the same: no hint either exists.
            tree = await store.tree(conversation_id)
            if not any(message.id == leaf for message in tree):
                raise RequestError(
                    "leaf_id is not a message of this conversation.", param="leaf_id"
                )
            # Choosing a version shows its whole branch: down to its newest descendant.
            changes["leaf_id"] = newest_leaf(tree, leaf)
        if "options" in changes:
            changes["options"] = sized(changes["options"] or {})
        if "pinned" in changes:
            pinned = changes.pop("pinned")
            if pinned is None:
                raise RequestError("pinned must be true or false.", param="pinned")
            # Pinning a pinned one again keeps its place.
            changes["pinned_at"] = (current.pinned_at or time.time()) if pinned else None
        conversation = await store.update_conversation(conversation_id, owners, **changes)
        return conversation_object(conversation)

    @router.delete("/{conversation_id}")
    async def remove(conversation_id: str, request: Request) -> dict[str, Any]:
        await store.delete_conversation(conversation_id, reach(principal_of(request.scope)))
        return {"id": conversation_id, "object": "conversation.deleted", "deleted": True}

    return router
