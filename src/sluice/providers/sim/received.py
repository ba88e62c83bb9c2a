"""What the simulated model says it received with a question: each image (format, size
in pixels, bytes — read from the image's header) and each text file inlined into the
question (name, lines), so a test or a demo sees that attachments reached the model.
Deterministic: the same question gets the same sentence.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sluice.wire.images import sniff
from sluice.wire.inlined import inlined_files

#: Base64 characters decoded to read an image's header (a JPEG's frame header may come
#: after tens of kilobytes of metadata); the rest is only counted.
_HEAD_CHARS = 256 * 1024


def received(message: dict[str, Any], *, japanese: bool = False) -> str:
    """One sentence naming what came with ``message`` (a user message), or ""."""
    content = message.get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
    images: list[str] = []
    files: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("image_url", "input_image"):
            images.append(_image(part, japanese))
        elif kind in ("text", "input_text") and isinstance(part.get("text"), str):
            for file in inlined_files(part["text"]):
                lines = file.lines
                if japanese:
                    files.append(f"ファイル {file.name}（{lines}行）")
                else:
                    files.append(f"the file {file.name} ({lines} line{'s' if lines != 1 else ''})")
    items = images + files
    if not items:
        return ""
    if japanese:
        listed = items[0] if len(items) == 1 else "、".join(items[:-1]) + "と" + items[-1]
        return f"{listed}を受け取りました。"
    listed = items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
    return f"I received {listed}."


def _image(part: dict[str, Any], japanese: bool) -> str:
    url = part.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url.startswith("data:"):
        return (
            "画像へのリンク（取得していません）" if japanese else "a link to an image (not fetched)"
        )
    encoded = url.partition(",")[2]
    size = len(encoded) * 3 // 4 - encoded[-2:].count("=")
    head = encoded[: _HEAD_CHARS - _HEAD_CHARS % 4]
    try:
        info = sniff(base64.b64decode(head))
    except (binascii.Error, ValueError):
        info = None
    if info is None:
        return "読み取れない画像" if japanese else "an image I could not read"
    comma = "、" if japanese else ", "
    facts = comma.join((info.format.upper(), f"{info.width}x{info.height}", _size(size)))
    return f"画像（{facts}）" if japanese else f"an image ({facts})"


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"
