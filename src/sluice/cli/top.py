"""``sluice top``: a live terminal view of a running gateway.

Every ``--interval`` seconds it reads, with the master key:

- ``GET /v1/admin/streams``: the answers running in the process that answered —
  model, key name, age, tokens, tokens/s, time to first token;
- ``GET /metrics``: request, error and output-token counters (every worker's), turned
  into rates by ``top_view.rates``;
- and, beside those (it can take seconds), ``GET /health`` at most every 5 s: the
  status and, where the gateway has them, its alerts;

and redraws one frame (``top_view.render``) in a rich ``Live`` on the alternate screen.
``q`` or Ctrl-C quits (exit 0); ``--once`` prints one frame, for scripts. An unreachable
gateway or a refused key on the first look is one line on stderr and exit 1; later, a
look that fails is shown in the header and the view keeps trying. A refused key always
ends it: nothing will change that.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from sluice.cli.backend import RUNTIME, USAGE, CliError

if TYPE_CHECKING:
    import aiohttp
    from rich.console import Console

    from sluice.cli.top_view import Counters, Frame

T = TypeVar("T")

HINT = ("q or Ctrl-C quits",)


class Unreachable(CliError):
    """The gateway could not be read this time (down, draining, timed out): it may come
    back, so a running view keeps looking."""


class Scraper:
    """One gateway's three endpoints, read with the master key.

    ``/health`` checks every upstream, which takes up to their timeouts (seconds, with
    one down), so it is read beside the frames, not in them: at most every
    ``HEALTH_EVERY`` seconds, one read at a time, each frame showing the latest.
    """

    HEALTH_EVERY = 5.0
    HEALTH_TIMEOUT = 30.0

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {key}"}
        self._counters: Counters | None = None
        #: The latest /health body, or why it could not be read; None before the first.
        self._health: Any = None
        self._health_problem: str | None = None
        self._health_task: asyncio.Task[None] | None = None
        self._health_at = float("-inf")

    async def _get(self, path: str, within: float | None = None) -> tuple[int, bytes]:
        import aiohttp

        # No `timeout=None`: aiohttp reads that as "no timeout at all", not the session's.
        options: dict[str, Any] = {"headers": self._auth}
        if within is not None:
            options["timeout"] = aiohttp.ClientTimeout(total=within)
        async with self.session.get(self.url + path, **options) as response:
            return response.status, await response.read()

    async def _read_health(self) -> None:
        import aiohttp

        try:
            status, raw = await self._get("/health", self.HEALTH_TIMEOUT)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._health, self._health_problem = None, f"health: {_reason(exc)}"
            return
        body = _json(raw)
        # 503 while degraded or down still describes the gateway.
        ok = isinstance(body, dict) and "status" in body
        self._health = body if ok else None
        self._health_problem = None if ok else f"health: HTTP {status}"

    def _look_at_health(self) -> None:
        now = time.monotonic()
        if self._health_task is not None and not self._health_task.done():
            return
        if now - self._health_at < self.HEALTH_EVERY:
            return
        self._health_at = now
        self._health_task = asyncio.get_running_loop().create_task(self._read_health())

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task

    async def frame(self, *, wait_for_health: bool = False) -> Frame:
        """One look (with ``wait_for_health``, once the health read in flight is in).
        Raises ``Unreachable``, or a ``CliError`` when the gateway refuses the key (or
        has no such endpoint)."""
        import aiohttp

        from sluice.cli.top_view import Frame, alerts_from, counters_from, rates, rows_from

        self._look_at_health()
        try:
            streams, metrics = await asyncio.gather(
                self._get("/v1/admin/streams"), self._get("/metrics")
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unreachable(f"cannot reach the gateway at {self.url} ({_reason(exc)})") from None
        body = _json(streams[1])
        if streams[0] >= 500:
            raise Unreachable(_refusal(self.url, streams[0], body))
        if streams[0] != 200 or not isinstance(body, dict):
            raise CliError(_refusal(self.url, streams[0], body), RUNTIME)
        problems = []
        fresh = None
        if metrics[0] == 200:
            try:
                fresh = counters_from(metrics[1].decode(errors="replace"), time.monotonic())
            except ValueError:
                problems.append("metrics: not in the Prometheus text format")
        else:
            problems.append(f"metrics: HTTP {metrics[0]}")
        before = self._counters
        if fresh is not None:
            self._counters = fresh
        if wait_for_health and self._health_task is not None:
            await asyncio.shield(self._health_task)
        if self._health_problem is not None:
            problems.append(self._health_problem)
        health = self._health
        status = health.get("status") if isinstance(health, dict) else None
        pid = body.get("pid")
        return Frame(
            url=self.url,
            rows=rows_from(body),
            running=_int(body.get("running")),
            retained=_int(body.get("retained")),
            pid=pid if isinstance(pid, int) else None,
            counters=fresh or before,
            rates=rates(before, fresh) if fresh is not None else None,
            status=str(status) if status is not None else None,
            alerts=alerts_from(health),
            problems=problems,
        )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _json(raw: bytes) -> Any:
    import orjson

    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    cause = getattr(exc, "os_error", None)
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return type(exc).__name__


def _refusal(url: str, status: int, body: Any) -> str:
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if status in (401, 403):
        return (
            f"the gateway at {url} refused the key (HTTP {status}): sluice top needs the "
            "master key (SLUICE_MASTER_KEY or --key)"
        )
    if status == 404:
        return f"the gateway at {url} has no /v1/admin/streams (an older sluice?)"
    return f"the gateway at {url} answered HTTP {status}" + (f": {message}" if message else "")


async def _race(stop: asyncio.Event, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None once ``stop`` is set first (``work`` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if not task.cancelled() else None


@contextlib.contextmanager
def quit_keys(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C (and SIGTERM) set ``stop``; so does ``q`` when stdin is a terminal, read
    key by key (cbreak: no echo, no Enter; Ctrl-C still signals) and restored after."""
    import termios
    import tty

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for number in signals:
        loop.add_signal_handler(number, stop.set)
    fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    saved = termios.tcgetattr(fd) if fd is not None else None
    if fd is not None:
        tty.setcbreak(fd)

        def readable() -> None:
            try:
                keys = os.read(fd, 64)
            except OSError:
                keys = b""
            if not keys:
                loop.remove_reader(fd)  # stdin closed: Ctrl-C still works
            elif b"q" in keys.lower():
                stop.set()

        loop.add_reader(fd, readable)
    try:
        yield
    finally:
        if fd is not None:
            loop.remove_reader(fd)
            if saved is not None:
                termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for number in signals:
            loop.remove_signal_handler(number)


async def watch(scraper: Scraper, console: Console, interval: float) -> None:
    from rich.live import Live

    from sluice.cli.top_view import render

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with quit_keys(stop):
        # A gateway that cannot be read at all fails here, before the screen changes.
        frame = await _race(stop, scraper.frame())
        if frame is None:
            return
        with Live(render(frame, HINT), console=console, screen=True, auto_refresh=False) as live:
            next_at = loop.time() + interval
            while True:
                await _race(stop, asyncio.sleep(max(0.0, next_at - loop.time())))
                if stop.is_set():
                    return
                next_at = loop.time() + interval
                try:
                    fresh = await _race(stop, scraper.frame())
                except Unreachable as exc:
                    # Gone for now: keep the last picture, say so, look again.
                    fresh = replace(frame, status="unreachable", problems=[exc.message])
                if fresh is None or stop.is_set():
                    return
                frame = fresh
                live.update(render(frame, HINT), refresh=True)


async def once(scraper: Scraper, console: Console, interval: float) -> None:
    from sluice.cli.top_view import render

    await scraper.frame()
    # A second look ``interval`` later: rates need two scrapes.
    await asyncio.sleep(interval)
    console.print(render(await scraper.frame(wait_for_health=True)))


def top(
    url: Annotated[
        str,
        typer.Option(metavar="URL", envvar="SLUICE_URL", help="The gateway to watch."),
    ] = "http://127.0.0.1:8000",
    key: Annotated[
        str | None,
        typer.Option(metavar="KEY", envvar="SLUICE_MASTER_KEY", help="The gateway's master key."),
    ] = None,
    interval: Annotated[
        float, typer.Option(metavar="SECONDS", min=0.1, max=3600, help="Seconds between looks.")
    ] = 1.0,
    once_: Annotated[
        bool,
        typer.Option("--once", help="Print one frame (two looks --interval apart) and exit."),
    ] = False,
) -> None:
    """Watch a running gateway: its streams, request and error rates, alerts."""
    import aiohttp
    from rich.console import Console

    from sluice.cli.terminal import fail

    if not url.startswith(("http://", "https://")):
        raise fail(f"--url {url!r} is not an http(s) URL", USAGE)
    if not key:
        raise fail("no master key: set SLUICE_MASTER_KEY or pass --key", USAGE)
    console = Console(highlight=False, emoji=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # a script's copy: wide enough for every column

    async def run() -> None:
        timeout = aiohttp.ClientTimeout(total=max(5.0, interval), connect=3.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            scraper = Scraper(session, url, key)
            try:
                await (once if once_ else watch)(scraper, console, interval)
            finally:
                await scraper.close()

    try:
        asyncio.run(run())
    except CliError as exc:
        raise fail(exc.message, exc.code) from None


def register(app: typer.Typer) -> None:
    from sluice.cli.terminal import Command

    app.command(cls=Command)(top)
