"""Driving the real `sluice` commands in a pseudo-terminal (pexpect) for the terminal tests.

``Terminal.wait`` matches a pattern against everything the program wrote, with escape
sequences stripped, from where the previous match ended: redraws of the live region and
of the prompt repeat text, so each step looks only at what came after the last one.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pexpect
from typer.testing import CliRunner, Result

from tests.servers import base_env

# CSI sequences, OSC strings, charset selection and other two-byte escapes.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[()][0-9A-Za-z]"
    r"|\x1b[@-Z\\-_=>78]"
)

ENTER = "\r"
ESC_ENTER = "\x1b\r"
CTRL_C = "\x03"
CTRL_D = "\x04"
UP = "\x1b[A"


def plain(text: str) -> str:
    return _ESCAPES.sub("", text).replace("\r", "")


def terminal_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = base_env(SLUICE_DATA_DIR=str(data_dir), TERM="xterm-256color", **extra)
    # Nobody answers prompt_toolkit's cursor-position requests in a bare pty.
    env["PROMPT_TOOLKIT_NO_CPR"] = "1"
    # No desktop clipboard: /copy falls back to the terminal's (OSC 52).
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "NO_COLOR"):
        env.pop(name, None)
    return env


class Terminal:
    def __init__(
        self, args: list[str], env: dict[str, str], cwd: Path, *, rows: int = 40, cols: int = 120
    ) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "sluice", *args],
            env=env,
            cwd=str(cwd),
            encoding="utf-8",
            codec_errors="replace",
            dimensions=(rows, cols),
            timeout=20,
        )
        self.raw = ""
        self._mark = 0
        self.ended = False

    def _pump(self, timeout: float) -> None:
        if self.ended:
            time.sleep(timeout)
            return
        try:
            self.raw += self.child.read_nonblocking(65536, timeout)
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self.ended = True

    @property
    def text(self) -> str:
        return plain(self.raw)

    def wait(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """The next match of ``pattern`` (a regex) in the output, after the last one."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.text, self._mark)
            if found:
                self._mark = found.end()
                return found
            if time.monotonic() > deadline or self.ended:
                tail = self.text[self._mark :][-3000:]
                raise AssertionError(f"{pattern!r} not seen; after the last match:\n{tail}")
            self._pump(0.05)

    def since_mark(self) -> str:
        return self.text[self._mark :]

    def send(self, keys: str) -> None:
        self.child.send(keys)

    def line(self, text: str) -> None:
        self.child.send(text + ENTER)

    def paste(self, text: str) -> None:
        """A bracketed paste, as a terminal sends one."""
        self.child.send(f"\x1b[200~{text}\x1b[201~")

    def exit_code(self, timeout: float = 15.0) -> int:
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            self._pump(0.1)
        self.child.close()
        status = self.child.exitstatus
        if status is None and self.child.signalstatus is not None:
            return 128 + int(self.child.signalstatus)
        return int(status) if status is not None else -1

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


def sluice(
    *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a `sluice` command with pipes for stdin and stdout (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "sluice", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def invoke(*args: str, data_dir: Path, stdin: str = "", **extra_env: str) -> Result:
    """Run a `sluice` command in this process (stdin and stdout are not terminals): for
    everything that needs no terminal, without an interpreter's start-up per call."""
    from sluice.cli.main import app

    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith(("SLUICE_", "OPENAI_"))
    }
    env["SLUICE_DATA_DIR"] = str(data_dir)
    env.update(extra_env)
    return CliRunner().invoke(app, list(args), input=stdin, env=env, catch_exceptions=False)


class CuttableProxy:
    """A TCP proxy to a server whose connections a test can cut (a network drop), and
    which can refuse new ones (``down``) while the server itself keeps running."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.down = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every open connection, as a network failure would."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()
