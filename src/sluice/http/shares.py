"""Read-only share links: the conversation's owner makes, lists and revokes them
(``/v1/conversations/{id}/shares``, owner-scoped like every conversation endpoint);
anyone holding a live link reads the conversation without signing in
(``GET /v1/shared/{token}``, and the page ``/share/{token}`` that shows it).

The public read is the one endpoint here an attacker can reach without a key: a token is
checked for shape and length before it is hashed, looked up by its hash, and every
answer — found or not — is kept out of caches, search engines and Referer headers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, Response

from sluice.errors import NotFound
from sluice.http.asgi import error_response
from sluice.http.conversations import reach
from sluice.http.gate import principal_of
from sluice.http.json_response import ORJSONResponse
from sluice.store.conversations import ConversationStore
from sluice.store.shares import Share, SharedConversation, ShareStore

#: Every answer of the public read and page: never cached (a revoked link must stop
#: working at once, also behind a shared proxy), never indexed, never sent on as a Referer.
PUBLIC_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}


def share_object(share: Share) -> dict[str, Any]:
    return {
        "id": share.id,
        "object": "conversation.share",
        "conversation_id": share.conversation_id,
        "created_at": share.created_at,
        "revoked_at": share.revoked_at,
    }


def shared_object(shared: SharedConversation) -> dict[str, Any]:
    return {
        "object": "conversation.shared",
        "title": shared.title,
        "model": shared.model,
        "created_at": shared.created_at,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "model": m.model,
                "finish_reason": m.finish_reason,
                "status": m.status,
                "created_at": m.created_at,
            }
            for m in shared.messages
        ],
    }


def link(request: Request, token: str) -> str:
    # The Host was checked against allowed_hosts by the boundary before we got here.
    return f"{str(request.base_url).rstrip('/')}/share/{token}"


def build_router(conversations: ConversationStore, shares: ShareStore) -> APIRouter:
    """The owner's side, under the conversation it shares."""
    router = APIRouter(prefix="/v1/conversations", tags=["conversations"])

    @router.post("/{conversation_id}/shares", status_code=201)
    async def create(conversation_id: str, request: Request) -> dict[str, Any]:
        share, token = await shares.create(conversation_id, reach(principal_of(request.scope)))
        # The token is in this answer only: the store keeps its hash.
        return {**share_object(share), "url": link(request, token), "token": token}

    @router.get("/{conversation_id}/shares")
    async def list_shares(conversation_id: str, request: Request) -> dict[str, Any]:
        await conversations.conversation(conversation_id, reach(principal_of(request.scope)))
        return {
            "object": "list",
            "data": [share_object(s) for s in await shares.shares(conversation_id)],
        }

    @router.delete("/{conversation_id}/shares/{share_id}")
    async def revoke(conversation_id: str, share_id: str, request: Request) -> dict[str, Any]:
        await conversations.conversation(conversation_id, reach(principal_of(request.scope)))
        return share_object(await shares.revoke(conversation_id, share_id))

    return router


def build_public_router(shares: ShareStore, page: Path, page_headers: dict[str, str]) -> APIRouter:
    """The reader's side: no key needed (the gate lets ``/v1/shared/`` and ``/share/``
    through), so nothing here knows or tells who the reader is."""
    router = APIRouter(tags=["conversations"])
    headers = {**page_headers, **PUBLIC_HEADERS}

    @router.get("/v1/shared/{token}", response_model=None)
    async def read_shared(token: str) -> Response:
        try:
            shared = await shares.shared(token)
        except NotFound as exc:
            status, body, extra = error_response(exc)
            return Response(
                body,
                status_code=status,
                headers={**{k.decode(): v.decode() for k, v in extra}, **PUBLIC_HEADERS},
                media_type="application/json",
            )
        return ORJSONResponse(shared_object(shared), headers=PUBLIC_HEADERS)

    @router.get("/share/{token}", include_in_schema=False)
    async def shared_page(token: str) -> FileResponse:
        # The same page for every token: it reads the conversation itself, so a link
        # that does not work costs no lookup here.
        return FileResponse(page, headers=headers)

    return router
