"""Helpers for fault tests: what the `sluice sim` upstream saw, per key."""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

from tests.servers import ServerProcess


def new_key() -> str:
    return uuid.uuid4().hex[:12]


def upstream_saw(upstream: ServerProcess, key: str) -> dict[str, Any]:
    with urllib.request.urlopen(upstream.url + "/sim/stats", timeout=5) as response:
        stats = json.load(response)
    seen: dict[str, Any] = stats["keys"].get(
        key, {"attempts": 0, "completed": 0, "disconnected": 0, "failed": 0, "prompts": []}
    )
    return seen
