"""``sluice history``: the stored conversations (the web page's too) from the terminal,
and the two export formats ``/save`` and ``history export`` write."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sluice.cli.backend import (
    Backend,
    CliError,
    ConversationInfo,
    MessageInfo,
    resolve_conversation,
)
from sluice.cli.render import render_all, visible


def to_markdown(conversation: ConversationInfo, messages: list[MessageInfo]) -> str:
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    lines.append(f"- id: `{conversation.id}`")
    if conversation.model:
        lines.append(f"- model: {conversation.model}")
    lines.append(f"- started: {_iso(conversation.created_at)}")
    if conversation.system_prompt:
        lines.append(f"- system prompt: {conversation.system_prompt}")
    lines.append("")
    for message in messages:
        if message.role == "user":
            lines.append("## You")
        else:
            lines.append(f"## {message.model or 'Assistant'}")
        lines += ["", message.content.rstrip(), ""]
        if message.role != "user" and message.status != "complete":
            lines += [f"*({message.status})*", ""]
    return "\n".join(lines)


def to_json(conversation: ConversationInfo, messages: list[MessageInfo]) -> dict[str, Any]:
    """The shape of ``GET /v1/conversations/{id}``."""
    return {
        "id": conversation.id,
        "object": "conversation",
        "title": conversation.title,
        "system_prompt": conversation.system_prompt,
        "model": conversation.model,
        "created_at": conversation.created_at,
        "updated_at": conversation.updated_at,
        "messages": [
            {
                "id": m.id,
                "object": "conversation.message",
                "role": m.role,
                "content": m.content,
                "model": m.model,
                "status": m.status,
                "finish_reason": m.finish_reason,
                "usage": None
                if m.completion_tokens is None
                else {
                    "prompt_tokens": m.prompt_tokens or 0,
                    "completion_tokens": m.completion_tokens,
                    "total_tokens": (m.prompt_tokens or 0) + m.completion_tokens,
                },
                "ttft_ms": m.ttft_ms,
                "duration_ms": m.duration_ms,
                "error": m.error,
                "created_at": m.created_at,
                "versions": {"index": m.version - 1, "count": m.versions},
            }
            for m in messages
        ],
    }


def export_text(conversation: ConversationInfo, messages: list[MessageInfo], fmt: str) -> str:
    if fmt == "json":
        return orjson.dumps(to_json(conversation, messages), option=orjson.OPT_INDENT_2).decode()
    return to_markdown(conversation, messages)


async def list_conversations(
    backend: Backend, console: Console, *, query: str | None, limit: int
) -> int:
    found = await backend.conversations(query=query, limit=limit)
    if not console.is_terminal:
        # Tab-separated for scripts: id, last update (UTC), model, title.
        for c in found:
            print(f"{c.id}\t{_iso(c.updated_at)}\t{c.model or ''}\t{c.title}")
        return len(found)
    if not found:
        what = f"matching {query!r} " if query else ""
        console.print(Text(f"No conversations {what}in {backend.where}.", style="dim"))
        return 0
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("updated", style="dim", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("title", overflow="ellipsis", no_wrap=True)
    for c in found:
        table.add_row(c.id, _ago(c.updated_at), c.model or "", Text(c.title))
    console.print(table)
    return len(found)


async def show(backend: Backend, console: Console, given: str | None) -> None:
    conversation_id = await latest_or(backend, given)
    conversation, messages = await backend.conversation(conversation_id)
    if not console.is_terminal:
        print(to_markdown(conversation, messages))
        return
    console.print(Text(conversation.title or "Untitled conversation", style="bold"))
    details = [conversation.id, _ago(conversation.updated_at)]
    if conversation.model:
        details.append(conversation.model)
    console.print(Text(" · ".join(details), style="dim"))
    if conversation.system_prompt:
        console.print(Text(f"system: {conversation.system_prompt}", style="dim italic"))
    console.print()
    show_messages(console, messages)


def show_messages(console: Console, messages: list[MessageInfo]) -> None:
    for message in messages:
        if message.role == "user":
            grid = Table.grid()
            grid.add_column(no_wrap=True)
            grid.add_column(ratio=1)
            grid.add_row(Text("› ", style="bright_black"), Text(visible(message.content), "bold"))
            console.print(grid)
        else:
            for renderable in render_all(message.content):
                console.print(renderable)
            info = [message.model or "assistant"]
            if message.status != "complete":
                info.append(message.status)
            if message.versions > 1:
                info.append(f"version {message.version} of {message.versions}")
            console.print(Text(" · ".join(info), style="dim"))
        console.print()


async def latest_or(backend: Backend, given: str | None) -> str:
    """The conversation ``given`` names (an id or a unique prefix), else the latest."""
    if given:
        return await resolve_conversation(backend, given)
    latest = await backend.conversations(limit=1)
    if not latest:
        raise CliError(
            f"there are no conversations yet in {backend.where}; start one with `sluice chat`"
        )
    return latest[0].id


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ago(timestamp: float) -> str:
    seconds = max(0.0, time.time() - timestamp)
    if seconds < 60:
        return "just now"
    for size, unit in ((86400 * 7, "w"), (86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"
