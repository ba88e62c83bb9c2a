"""Saving an answer while it streams, so a crash loses at most a second of text.

One task per turn reads the generation's log once a second (never per chunk), writes
the text so far, and when the generation ends writes the final state: status, finish
reason, usage, time to first token, duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sluice.engine.generation import Generation, State
from sluice.events import Finish, StreamError, TextDelta, Usage
from sluice.store.conversations import ConversationStore

logger = logging.getLogger("sluice.chat")

_STATUS = {
    State.COMPLETED: "complete",
    State.CANCELLED: "incomplete",
    State.FAILED: "failed",
}


class Saver:
    def __init__(
        self,
        generation: Generation,
        store: ConversationStore,
        message_id: str,
        *,
        interval: float = 1.0,
    ) -> None:
        self.generation = generation
        self._store = store
        self._message_id = message_id
        self._interval = interval
        self.task = asyncio.get_running_loop().create_task(self._run())

    def _text(self) -> str:
        return "".join(
            e.text for e in self.generation.log.events if type(e) is TextDelta and e.index == 0
        )

    async def _run(self) -> None:
        log = self.generation.log
        saved = ""
        saved_at = time.monotonic()
        while not log.closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await log.wait_end()
            text = self._text()
            # Write when the text grew, and now and then regardless, so other instances
            # can tell a live answer from one a dead process left behind.
            stale = time.monotonic() - saved_at > 5
            if (text != saved or stale) and not log.closed:
                try:
                    await self._store.update_message(self._message_id, content=text)
                    saved, saved_at = text, time.monotonic()
                except Exception:
                    logger.warning("saving a partial answer failed", exc_info=True)
        await self._finish()

    async def _finish(self) -> None:
        generation = self.generation
        events = generation.log.events
        reason = next(
            (e.reason for e in reversed(events) if type(e) is Finish and e.index == 0), None
        )
        usage = next((e for e in reversed(events) if type(e) is Usage), None)
        error = next((e for e in reversed(events) if type(e) is StreamError), None)
        started = generation.started_at
        first = generation.first_token_at
        finished = generation.finished_at or time.monotonic()
        try:
            await self._store.update_message(
                self._message_id,
                content=self._text(),
                status=_STATUS.get(generation.state, "failed"),
                finish_reason=reason,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                usage_estimated=bool(usage and usage.details.get("estimated")),
                ttft_ms=(first - started) * 1000 if first else None,
                duration_ms=(finished - started) * 1000,
                model=generation.served_by or generation.model,
                error=error.message if error else None,
            )
        except Exception:
            logger.error("saving the final answer failed", exc_info=True)
