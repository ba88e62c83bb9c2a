"""``sluice ask``: one answer, streamed to stdout.

Stateless, like a call to ``/v1/chat/completions`` (which is what it makes with
``--url``): nothing is stored, so it starts fast and never touches the conversation
store. Output modes:

- rendered markdown as it streams (a terminal), or the raw text as it streams (a pipe,
  or ``--raw``);
- ``--no-stream``: the same, printed once the answer is complete;
- ``--json``: the final ``chat.completion`` object;
- ``--chunks``: every chunk as it arrives — JSON lines in a pipe, one compact line each
  on a terminal (time since the request, id, created, model, choice index, delta,
  finish reason, usage).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from rich.console import Console
from rich.text import Text

from sluice.cli.answer import Answer, LiveAnswer, RawAnswer
from sluice.cli.backend import Backend, CliError
from sluice.cli.render import render_all, visible
from sluice.events import Event
from sluice.wire.openai_chunks import Completion, decode_chunk


@dataclass
class AskRequest:
    question: str
    model: str | None = None
    system: str | None = None
    temperature: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def body(self, model: str) -> dict[str, Any]:
        messages = [{"role": "user", "content": self.question}]
        if self.system:
            messages.insert(0, {"role": "system", "content": self.system})
        body: dict[str, Any] = {**self.options, "model": model, "messages": messages}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body


def compose_question(words: list[str], stdin: str | None) -> str:
    """The question from the arguments and piped input: the piped text first, the
    instruction after it (``cat notes.md | sluice ask "summarize"``)."""
    question = " ".join(words).strip()
    piped = (stdin or "").strip("\n")
    if piped.strip() and question:
        return f"{piped}\n\n{question}"
    return question or piped


async def ask(
    backend: Backend, request: AskRequest, *, mode: str, raw: bool, console: Console
) -> None:
    model = request.model or await backend.default_model()
    started = time.monotonic()
    # Closed on the way out whatever happens: leaving early cancels the upstream call.
    async with contextlib.aclosing(backend.chunks(request.body(model))) as chunks:
        await _answer(chunks, model, mode=mode, raw=raw, console=console, started=started)


async def _answer(
    chunks: AsyncIterator[dict[str, Any]],
    model: str,
    *,
    mode: str,
    raw: bool,
    console: Console,
    started: float,
) -> None:
    if mode == "chunks":
        await _print_chunks(chunks, console)
    elif mode in ("json", "whole"):
        completion, head = await _collect(chunks, console, model)
        if mode == "json":
            obj = completion.to_object(head["id"], head["created"], head["model"], 1)
            pretty = orjson.OPT_INDENT_2 if console.is_terminal else 0
            sys.stdout.write(orjson.dumps(obj, option=pretty).decode() + "\n")
        elif raw or not console.is_terminal:
            text = completion.text()
            sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
        else:
            for renderable in render_all(completion.text()):
                console.print(renderable)
    else:
        view: Answer = (
            RawAnswer(model)
            if raw or not console.is_terminal
            else LiveAnswer(console, model, summary=False, started=started)
        )
        error: dict[str, Any] | None = None
        async with view:
            async for chunk in chunks:
                error = _error_of(chunk)
                if error is not None:
                    break
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) == 0:
                        view.add((choice.get("delta") or {}).get("content") or "")
                usage = chunk.get("usage")
                if usage:
                    view.usage(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
        if error is not None:
            raise _failed(error, bool(view.text()))


async def _collect(
    chunks: AsyncIterator[dict[str, Any]], console: Console, model: str
) -> tuple[Completion, dict[str, Any]]:
    completion = Completion()
    head: dict[str, Any] = {"id": "", "created": int(time.time()), "model": model}
    events: list[Event] = []
    status = Console(stderr=True).status(f"{model} · waiting") if console.is_terminal else None
    if status is not None:
        status.start()
    try:
        async for chunk in chunks:
            error = _error_of(chunk)
            if error is not None:
                raise _failed(error, partial=False)
            if not head["id"]:
                head = {"id": chunk["id"], "created": chunk["created"], "model": chunk["model"]}
            events.clear()
            decode_chunk(chunk, events)
            for event in events:
                completion.add(event)
    finally:
        if status is not None:
            status.stop()
    return completion, head


async def _print_chunks(chunks: AsyncIterator[dict[str, Any]], console: Console) -> None:
    started = time.monotonic()
    error: dict[str, Any] | None = None
    text = False
    async for chunk in chunks:
        text = text or any(
            (c.get("delta") or {}).get("content") for c in chunk.get("choices") or ()
        )
        if not console.is_terminal:
            sys.stdout.write(orjson.dumps(chunk).decode() + "\n")
            sys.stdout.flush()
        else:
            console.print(_chunk_line(chunk, (time.monotonic() - started) * 1000))
        error = _error_of(chunk)
    if error is not None:
        raise _failed(error, partial=text)


def _chunk_line(chunk: dict[str, Any], elapsed_ms: float) -> Text:
    line = Text(f"{elapsed_ms:8.1f} ms ", style="dim")
    if "error" in chunk:
        return line + Text("error " + orjson.dumps(chunk["error"]).decode(), style="red")
    line.append(f"{chunk.get('id')} ", style="cyan")
    line.append(f"created={chunk.get('created')} model={chunk.get('model')} ", style="dim")
    for choice in chunk.get("choices") or ():
        line.append(f"[{choice.get('index')}] ", style="bold")
        line.append(visible(orjson.dumps(choice.get("delta")).decode()))
        reason = choice.get("finish_reason")
        line.append(f" finish={reason}", style="yellow" if reason else "dim")
    if chunk.get("usage"):
        line.append("usage=" + orjson.dumps(chunk["usage"]).decode(), style="green")
    return line


def _error_of(chunk: dict[str, Any]) -> dict[str, Any] | None:
    error = chunk.get("error")
    if error is None:
        return None
    if isinstance(error, dict):
        return error
    return {"message": str(error)}


def _failed(error: dict[str, Any], partial: bool) -> CliError:
    message = str(error.get("message") or "the answer failed").rstrip(".")
    # An upstream failure says what to check (the gateway's hint), before what to do now.
    hint = error.get("hint")
    if hint:
        message = f"{message}; {hint}"
    if partial:
        return CliError(
            f"the answer failed midway: {message}; the partial answer is above; "
            "run the command again"
        )
    return CliError(f"{message}; try again, or pick another model with -m")
