"""Saving an answer while it streams, so a crash loses at most a second of text.

One task per turn reads the generation's log once a second (never per chunk), writes
the text so far (and touches the row at least every ``TOUCH_EVERY`` seconds, which is
how the crash-recovery sweep tells a live answer from a dead one), and when the
generation ends writes the final state: status, finish reason, usage, time to first
token, duration — retried for a while if the store is down, since a final state never
written would leave the answer ``streaming`` under a live instance.

An answer the gateway itself cut short (shutting down) is stored ``incomplete`` with the
finish reason ``interrupted``, as the crash-recovery sweep stores one a dead process
left: the reader's own Stop keeps ``incomplete``. Clients tell the two apart to offer
Retry for the one and not pretend the user stopped it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sluice.engine.generation import Generation, State
from sluice.errors import NotFound
from sluice.events import Finish, StreamError, TextDelta, Usage
from sluice.store.conversations import ConversationStore

logger = logging.getLogger("sluice.chat")

#: A live answer's row is written at least this often (seconds), text grown or not.
TOUCH_EVERY = 5.0
#: Waits between tries of the final write (the last try comes after their sum).
_FINAL_RETRIES = (0.5, 1.0, 2.0, 4.0)

_STATUS = {
    State.COMPLETED: "complete",
    State.CANCELLED: "incomplete",
    State.FAILED: "failed",
}
#: The finish reason of an answer cut short by the gateway, not by its reader.
INTERRUPTED = "interrupted"


def interrupted(generation: Generation, error: StreamError | None) -> bool:
    """Whether the gateway, not the reader, cut the answer short (shutdown or drain)."""
    if generation.state is State.CANCELLED:
        return generation.cancel_reason == "shutdown"
    return generation.state is State.FAILED and error is not None and error.code == "shutting_down"


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
            stale = time.monotonic() - saved_at > TOUCH_EVERY
            if (text != saved or stale) and not log.closed:
                try:
                    await self._store.update_message(self._message_id, content=text)
                    saved, saved_at = text, time.monotonic()
                except Exception:
                    logger.warning("saving a partial answer failed", exc_info=True)
        await self._finish()

    async def _finish(self) -> None:
        for wait in (*_FINAL_RETRIES, None):
            try:
                await self._write_final()
                return
            except NotFound:
                return  # the conversation was deleted meanwhile: nothing left to save
            except Exception:
                if wait is None:
                    logger.error("saving the final answer failed", exc_info=True)
                    return
                logger.warning("saving the final answer failed; retrying in %.1f s", wait)
                await asyncio.sleep(wait)

    async def _write_final(self) -> None:
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
        status = _STATUS.get(generation.state, "failed")
        if interrupted(generation, error):
            status, reason = "incomplete", INTERRUPTED
        await self._store.update_message(
            self._message_id,
            content=self._text(),
            status=status,
            finish_reason=reason,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            usage_estimated=bool(usage and usage.details.get("estimated")),
            cached=bool(usage and usage.details.get("cached")),
            ttft_ms=(first - started) * 1000 if first else None,
            duration_ms=(finished - started) * 1000,
            model=generation.served_by or generation.model,
            error=error.message if error else None,
        )
