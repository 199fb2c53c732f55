"""Crafted JPEGs for tests and benches: the "scan bomb" (a progressive JPEG with thousands of scans).

A progressive JPEG sends its coefficients in scans; a camera writes about 10. Each scan costs
the decoder a pass over the whole frame, however little it carries, so one large frame with
thousands of near-empty scans is a few hundred kilobytes that take tens of seconds to decode.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every marker segment up to EOI; an SOS runs to the next marker."""
    out: list[tuple[int, int, int]] = []
    pos = 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        end = pos + 2 + length
        if marker == 0xDA:  # entropy-coded data follows, up to the next real marker
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        out.append((marker, pos, end))
        pos = end
    return out


def progressive_jpeg(width: int, height: int, *, grey: int = 128) -> bytes:
    """An honest progressive JPEG of a flat grey frame (its AC scans carry almost nothing)."""
    image = Image.fromarray(np.full((height, width, 3), grey, np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", progressive=True, quality=90)
    return buffer.getvalue()


def scan_bomb(width: int = 7_000, height: int = 7_000, *, scans: int = 4_000) -> bytes:
    """A progressive JPEG of ``width`` x ``height`` with about ``scans`` near-empty scans.

    Built from an honest progressive JPEG by repeating its last AC scan (with the Huffman
    table before it) until there are ``scans`` scans: libjpeg warns about the repeated band
    and decodes every one of them.
    """
    honest = progressive_jpeg(width, height)
    segments = _segments(honest)
    sos = [i for i, (marker, _, _) in enumerate(segments) if marker == 0xDA]
    last = sos[-1]
    first_of_block = last
    while first_of_block > 0 and segments[first_of_block - 1][0] == 0xC4:  # its DHT
        first_of_block -= 1
    block = honest[segments[first_of_block][1] : segments[last][2]]
    body_end = segments[-1][2]
    extra = max(scans - len(sos), 0)
    return honest[:body_end] + block * extra + b"\xff\xd9"
