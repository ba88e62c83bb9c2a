"""A stored question's files, one at a time:
``GET /v1/conversations/{id}/messages/{message_id}/attachments/{index}``.

Conversation reads list each file's kind, name, media type and size with its ``url``
here; the bytes come only from this route, owner-checked like the conversation (another
principal's is "not found"). They are served as what they were checked to be when stored
— an image as its sniffed type, a text file as ``text/plain`` — with ``nosniff`` and a
sandboxing policy, so no stored file can run as a page of this origin.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sluice.chat.attachments import summary
from sluice.errors import NotFound
from sluice.http.gate import principal_of
from sluice.owners import visible_to
from sluice.store.conversations import ANY, ConversationStore, Message
from sluice.wire.images import MEDIA_TYPES

_IMAGE_TYPES = frozenset(MEDIA_TYPES.values())
#: The file may be shown (an <img> of the page) but never run or framed as a document.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "X-Content-Type-Options": "nosniff",
    # Chat content: kept in no cache (a signed-out or shared browser keeps nothing).
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def attachment_url(message: Message, index: int) -> str:
    return f"/v1/conversations/{message.conversation_id}/messages/{message.id}/attachments/{index}"


def attachment_summaries(message: Message) -> list[dict[str, Any]]:
    """A message's files as a conversation read lists them: no bytes, a ``url`` instead."""
    return [
        {**summary(item), "url": attachment_url(message, index)}
        for index, item in enumerate(message.attachments or [])
    ]


def build_router(store: ConversationStore) -> APIRouter:
    router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

    @router.get("/{conversation_id}/messages/{message_id}/attachments/{index}")
    async def attachment(
        conversation_id: str, message_id: str, index: int, request: Request
    ) -> Response:
        principal = principal_of(request.scope)
        # Whose conversations it may reach: its own, or any (the admin, the local user).
        await store.conversation(
            conversation_id, ANY if principal.admin else visible_to(principal.owner)
        )
        gone = NotFound("No such attachment.", param="index")
        try:
            message = await store.message(message_id)
        except NotFound:
            raise gone from None
        files = message.attachments or []
        if message.conversation_id != conversation_id or not 0 <= index < len(files):
            raise gone
        item = files[index]
        raw = base64.b64decode(item["data"])
        if item.get("kind") == "image" and item.get("media_type") in _IMAGE_TYPES:
            media_type = str(item["media_type"])
            disposition = "inline"
        else:
            media_type = "text/plain; charset=utf-8"
            disposition = "attachment"
        # RFC 6266/5987: the name as UTF-8, percent-encoded; no header can be forged with it.
        name = quote(str(item.get("name") or "file"), safe="")
        headers = {**_HEADERS, "Content-Disposition": f"{disposition}; filename*=UTF-8''{name}"}
        return Response(raw, media_type=media_type, headers=headers)

    return router
