"""Files sent with a question: checked, stored with it, and written into what the model
reads — images as OpenAI image content parts, text files inlined with their name
(``wire/inlined.py``).

Everything about a file is decided here, not taken from the client: an image's media type
and size in pixels come from its first bytes (``wire/images.py``), a text file must be
UTF-8 that can be stored. Bounds: ``MAX_FILES`` per question, ``MAX_IMAGE_BYTES`` and
``MAX_TEXT_BYTES`` per file, and the request body limit (``max_body_bytes``) over all of
them, since they travel base64-encoded in the JSON body.
"""

from __future__ import annotations

import base64
import binascii
import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from sluice.errors import RequestError
from sluice.wire.images import sniff
from sluice.wire.inlined import inline, inlined_files
from sluice.wire.storable import Unstorable, check_text

MAX_FILES = 4
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_TEXT_BYTES = 200 * 1024
#: Base64 of the largest file, and room to spare: a file a little too large is told so
#: by name (a much larger one is refused by the length check, before it is decoded).
_MAX_DATA_CHARS = (MAX_IMAGE_BYTES + 2) // 3 * 4 + 64 * 1024
#: Extensions read as text whatever media type the browser guessed (often none, or
#: ``application/octet-stream`` for ``.py`` and ``.md``).
_TEXT_EXTENSION_WORDS = (
    "txt md markdown json jsonl csv tsv py js mjs ts tsx jsx html htm css xml yaml yml toml "
    "ini cfg conf log sql sh bash zsh rs go java kt c h cc cpp hpp cs rb php swift lua r "
    "tex rst org diff patch env"
)
TEXT_EXTENSIONS = frozenset(_TEXT_EXTENSION_WORDS.split())
_TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/x-yaml",
        "application/yaml",
        "application/toml",
        "application/javascript",
        "application/x-sh",
        "application/sql",
    }
)
_NAME_FORBIDDEN = frozenset("\n\r\t/\\")
#: Bidirectional embeddings, overrides and isolates (and the marks), which reorder how
#: the rest of a name is shown.
_BIDI = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _file_name(name: str) -> str:
    check_text(name)
    if any(ch in _NAME_FORBIDDEN or unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        raise ValueError("a file name may not hold a slash, a line break or a control character")
    if any(ch in _BIDI for ch in name):
        # `evil\u202etxt.exe` shows as `evilexe.txt`: a name must read as it is.
        raise ValueError("a file name may not hold a direction override")
    return name


class AttachmentIn(BaseModel):
    """One file as the client sends it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_file_name)]
    #: What the client says it is: a hint for text files; an image's is read from its bytes.
    media_type: Annotated[str, Field(max_length=255)] = ""
    #: The bytes, base64 (a ``data:`` URL is accepted too).
    data: Annotated[str, Field(max_length=_MAX_DATA_CHARS)]


def checked(files: list[AttachmentIn] | None) -> list[dict[str, Any]] | None:
    """The files as stored with the question, or RequestError (400) naming the file and
    what is wrong with it (``attachments.1.data``)."""
    if not files:
        return None
    if len(files) > MAX_FILES:
        raise RequestError(
            f"Too many attachments: at most {MAX_FILES} per message.", param="attachments"
        )
    return [_checked(file, f"attachments.{index}") for index, file in enumerate(files)]


def _checked(file: AttachmentIn, at: str) -> dict[str, Any]:
    raw = _decoded(file.data, f"{at}.data")
    image = sniff(raw)
    if image is not None:
        if len(raw) > MAX_IMAGE_BYTES:
            raise _too_large(file.name, len(raw), MAX_IMAGE_BYTES, at)
        return {
            "kind": "image",
            "name": file.name,
            "media_type": image.media_type,
            "size": len(raw),
            "width": image.width,
            "height": image.height,
            "data": base64.b64encode(raw).decode("ascii"),
        }
    declared = file.media_type.split(";")[0].strip().lower()
    if declared.startswith("image/"):
        raise RequestError(
            f"Invalid value for '{at}.data': {file.name!r} is not a PNG, JPEG, GIF or WebP "
            "image (its bytes say otherwise).",
            param=f"{at}.data",
            code="invalid_image",
        )
    if not _texty(file.name, declared):
        raise RequestError(
            f"Invalid value for '{at}.media_type': {file.name!r} is neither an image (PNG, "
            "JPEG, GIF, WebP) nor a text file.",
            param=f"{at}.media_type",
            code="unsupported_attachment",
        )
    if len(raw) > MAX_TEXT_BYTES:
        raise _too_large(file.name, len(raw), MAX_TEXT_BYTES, at)
    try:
        text = check_text(raw.decode("utf-8").removeprefix("\ufeff"))
    except (UnicodeDecodeError, ValueError, Unstorable):
        raise RequestError(
            f"Invalid value for '{at}.data': {file.name!r} is not UTF-8 text.",
            param=f"{at}.data",
            code="invalid_text",
        ) from None
    return {
        "kind": "text",
        "name": file.name,
        "media_type": declared if declared.startswith("text/") else "text/plain",
        "size": len(raw),
        "lines": len(text.splitlines()),
        "data": base64.b64encode(raw).decode("ascii"),
    }


def _decoded(data: str, param: str) -> bytes:
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(
            f"Invalid value for '{param}': not base64.", param=param, code="invalid_base64"
        ) from None


def _texty(name: str, media_type: str) -> bool:
    extension = name.rpartition(".")[2].lower() if "." in name else ""
    return (
        media_type.startswith("text/")
        or media_type in _TEXT_TYPES
        or (extension in TEXT_EXTENSIONS)
    )


def _too_large(name: str, size: int, limit: int, at: str) -> RequestError:
    return RequestError(
        f"Invalid value for '{at}.data': {name!r} is {_kb(size)}; "
        f"the limit for this kind of file is {_kb(limit)}.",
        param=f"{at}.data",
        code="attachment_too_large",
    )


def _kb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB" if size >= 1024 * 1024 else f"{-(-size // 1024)} KB"


# --- what the model reads -----------------------------------------------------------------


def file_text(attachment: dict[str, Any]) -> str:
    return base64.b64decode(attachment["data"]).decode("utf-8").removeprefix("\ufeff")


def parts(question: str, attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The question and its files as content parts: the question's text first (so the
    guardrails' masked version of it can be read back), each text file, then each image."""
    out: list[dict[str, Any]] = [{"type": "text", "text": question}]
    for item in attachments:
        if item.get("kind") == "text":
            out.append({"type": "text", "text": inline(item["name"], file_text(item))})
    for item in attachments:
        if item.get("kind") == "image":
            url = f"data:{item['media_type']};base64,{item['data']}"
            out.append({"type": "image_url", "image_url": {"url": url}})
    return out


def merged(content: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Content parts as sent upstream: the text parts joined into one text (the files
    inlined into the message), then the images; plain text when there is no image."""
    text = "\n\n".join(p["text"] for p in content if p.get("type") == "text" and p.get("text"))
    images = [p for p in content if p.get("type") != "text"]
    if not images:
        return text
    return [{"type": "text", "text": text}, *images]


def masked_files(
    attachments: list[dict[str, Any]], content: str | list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The files as the input guardrails left them: a text file's name and text are read
    back from its inlined part of ``content`` (the checked parts: the question, each text
    file, the images), so what is stored is what the model was sent, masks included."""
    if not isinstance(content, list):
        return attachments
    texts = [p.get("text") or "" for p in content[1:] if p.get("type") == "text"]
    out: list[dict[str, Any]] = []
    position = 0
    for item in attachments:
        if item.get("kind") == "text" and position < len(texts):
            found = inlined_files(texts[position])
            position += 1
            original = file_text(item)
            if found and (
                found[0].name != item["name"] or found[0].text.rstrip("\n") != original.rstrip("\n")
            ):
                raw = found[0].text.encode("utf-8")
                item = {
                    **item,
                    "name": found[0].name,
                    "size": len(raw),
                    "lines": found[0].lines,
                    "data": base64.b64encode(raw).decode("ascii"),
                }
        out.append(item)
    return out


def user_message(question: str, attachments: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A stored question as the model reads it again (a history replay)."""
    if not attachments:
        return {"role": "user", "content": question}
    return {"role": "user", "content": merged(parts(question, attachments))}


def summary(attachment: dict[str, Any]) -> dict[str, Any]:
    """What a client is told of a stored file (its bytes are fetched on their own)."""
    return {k: v for k, v in attachment.items() if k != "data"}
