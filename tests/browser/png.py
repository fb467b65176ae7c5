"""Just enough of PNG to tell a blank screenshot from a page: decode an 8-bit, non-interlaced RGB or
RGBA image (what Chromium writes) into its pixels, and count their colours. No imaging library needed."""

from __future__ import annotations

import struct
import zlib
from collections import Counter

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunks(data: bytes) -> dict[bytes, list[bytes]]:
    assert data[:8] == SIGNATURE, "not a PNG"
    out: dict[bytes, list[bytes]] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at:at + 4])
        kind = data[at + 4:at + 8]
        out.setdefault(kind, []).append(data[at + 8:at + 8 + length])
        at += 12 + length
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int) -> None:
    for i in range(len(line)):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
        add = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
        line[i] = (line[i] + add) & 0xFF


def pixels(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """(width, height, every pixel as a tuple of its channels) of a PNG."""
    chunks = _chunks(data)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and colour in (2, 6) and interlace == 0, "only 8-bit RGB(A), not interlaced"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(b"".join(chunks[b"IDAT"])), width * bpp
    prev, out = bytes(stride), []
    for row in range(height):
        start = row * (stride + 1)
        line = bytearray(raw[start + 1:start + 1 + stride])
        _unfilter(raw[start], line, prev, bpp)
        out.extend(tuple(line[i:i + bpp]) for i in range(0, stride, bpp))
        prev = bytes(line)
    return width, height, out


def colour_share(data: bytes) -> tuple[int, float]:
    """How many colours a PNG has, and the share of its most common one (1.0: a single colour)."""
    _, _, px = pixels(data)
    counts = Counter(px)
    return len(counts), counts.most_common(1)[0][1] / len(px)
