"""Helpers for the browser tests and the screenshot script: Debian's Chromium driven by
Playwright (never Playwright's own browser download), and small calls to the gateway."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """The system Chromium's path, installed with scripts/browser.sh when missing."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if found is None:
        subprocess.run([str(ROOT / "scripts" / "browser.sh")], check=True)
        found = shutil.which("chromium") or "/usr/bin/chromium"
    return found


def call(url: str, method: str = "GET", body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def new_conversation(base: str, **fields: Any) -> dict[str, Any]:
    result: dict[str, Any] = call(base + "/v1/conversations", "POST", fields)
    return result


def conversation(base: str, conversation_id: str) -> dict[str, Any]:
    result: dict[str, Any] = call(f"{base}/v1/conversations/{conversation_id}")
    return result


def chat_turn(base: str, body: dict[str, Any]) -> str:
    """One POST /chat turn, read to its end; the raw event stream."""
    request = urllib.request.Request(
        base + "/chat", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        text: str = response.read().decode()
        return text
