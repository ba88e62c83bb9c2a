"""What an image is, from its first bytes: PNG, JPEG, GIF or WebP, and its size in pixels.

The media type of an attachment is read here, never taken from the client (a file
named ``cat.png`` sent as ``image/png`` may be anything). Only headers are read: no
pixel is decoded, so a hostile file costs a few comparisons. Formats:
PNG https://www.w3.org/TR/png/#5PNG-file-signature (IHDR first),
GIF https://www.w3.org/Graphics/GIF/spec-gif89a.txt (logical screen descriptor),
WebP https://developers.google.com/speed/webp/docs/riff_container (VP8, VP8L, VP8X),
JPEG ITU T.81 B.2 (the first SOFn segment's frame header).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

#: What each format is called in a media type and in a sentence.
MEDIA_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
}

_PNG = b"\x89PNG\r\n\x1a\n"
#: The last chunk of every PNG: length 0, type, CRC.
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
#: Largest side and pixel count accepted (OpenAI's largest input is 2048 x 768 after
#: scaling; this leaves room for any camera and refuses a header that lies).
MAX_SIDE = 16_384
MAX_PIXELS = 100_000_000
# SOF0-SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: Markers without a length (RST0-7, SOI, EOI, TEM).
_STANDALONE = frozenset([*range(0xD0, 0xDA), 0x01])
#: JPEG segments walked before giving up (a real file reaches its SOF in a few).
_MAX_SEGMENTS = 256


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    width: int
    height: int

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]


def sniff(data: bytes) -> ImageInfo | None:
    """The image ``data`` is, or None when it is none of the four formats, or its header
    is cut short, says it is empty or larger than any model takes (``MAX_SIDE``,
    ``MAX_PIXELS``), or the file is not whole (``_whole``). An image the upstream would
    refuse must be refused here: a stored question is sent again with every later turn."""
    info = _png(data) or _gif(data) or _webp(data) or _jpeg(data)
    if info is None or not (0 < info.width <= MAX_SIDE and 0 < info.height <= MAX_SIDE):
        return None
    if info.width * info.height > MAX_PIXELS or not _whole(info.format, data):
        return None
    return info


def _whole(format: str, data: bytes) -> bool:
    """The file ends as its format says a whole file ends (a cut-off upload does not):
    PNG with an IEND chunk after an IHDR whose CRC holds, JPEG with EOI, GIF with its
    trailer, WebP with the length its RIFF header gives. Padding (NULs) after the end
    is tolerated, as decoders do."""
    tail = data.rstrip(b"\x00")
    if format == "png":
        header_crc = int.from_bytes(data[29:33], "big")
        return zlib.crc32(data[12:29]) == header_crc and tail.endswith(_IEND)
    if format == "jpeg":
        return tail.endswith(b"\xff\xd9")
    if format == "gif":
        return tail.endswith(b"\x3b")
    return int.from_bytes(data[4:8], "little") + 8 <= len(data)


def _png(data: bytes) -> ImageInfo | None:
    if not data.startswith(_PNG) or len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return ImageInfo("png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big"))


def _gif(data: bytes) -> ImageInfo | None:
    if data[:6] not in (b"GIF87a", b"GIF89a") or len(data) < 10:
        return None
    return ImageInfo(
        "gif", int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    )


def _webp(data: bytes) -> ImageInfo | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width = int.from_bytes(data[26:28], "little") & 0x3FFF
        height = int.from_bytes(data[28:30], "little") & 0x3FFF
        return ImageInfo("webp", width, height)
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", width, height)
    return None


def _jpeg(data: bytes) -> ImageInfo | None:
    if data[:3] != b"\xff\xd8\xff":
        return None
    at = 2
    for _ in range(_MAX_SEGMENTS):
        # Fill bytes (0xFF runs) may come before a marker.
        while at < len(data) and data[at] == 0xFF:
            at += 1
        if at >= len(data):
            return None
        marker = data[at]
        at += 1
        if marker in _STANDALONE:
            continue
        if at + 2 > len(data):
            return None
        length = int.from_bytes(data[at : at + 2], "big")
        if length < 2:
            return None
        if marker in _SOF:
            if at + 7 > len(data):
                return None
            height = int.from_bytes(data[at + 3 : at + 5], "big")
            width = int.from_bytes(data[at + 5 : at + 7], "big")
            return ImageInfo("jpeg", width, height)
        if marker == 0xDA:  # start of scan before any frame header: not a JPEG we read
            return None
        at += length
    return None
