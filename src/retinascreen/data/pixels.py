"""Decoding guards shared by :mod:`~retinascreen.data.images` and :mod:`~retinascreen.data.dicom`.

The pixel limit checked from headers, the process-wide decode slots, the JPEG scan count
(checked before decoding) and any Pillow image to RGB uint8.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image

from retinascreen.errors import (
    AbnormalEncodingError,
    ConfigError,
    ImageTooLargeError,
    NotAnImageError,
)

MAX_JPEG_SCANS = 100
"""Most scans a JPEG frame may have. Cameras write 1 (baseline) or about 10 (progressive); each
scan of a progressive JPEG costs a pass over the whole image (about 14 ms at 49 megapixels), so
100 bounds a decode to about 1.5 s of CPU, while a crafted file can carry thousands."""
DECODE_CONCURRENCY_ENV = "RETINASCREEN_DECODE_CONCURRENCY"
DEFAULT_DECODE_CONCURRENCY = 2

_slots_lock = threading.Lock()
_slots: tuple[int, threading.BoundedSemaphore] | None = None


def decode_concurrency() -> int:
    """How many full decodes may run at once in this process (``RETINASCREEN_DECODE_CONCURRENCY``)."""
    raw = os.environ.get(DECODE_CONCURRENCY_ENV, "").strip()
    if not raw:
        return DEFAULT_DECODE_CONCURRENCY
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{DECODE_CONCURRENCY_ENV}={raw!r} is not a whole number (how many photos may be "
            "decoded at once)"
        ) from None
    if value < 1:
        raise ConfigError(f"{DECODE_CONCURRENCY_ENV} must be at least 1, not {value}")
    return value


@contextmanager
def decode_slot() -> Iterator[None]:
    """Hold one of the process-wide decode slots while decoding pixels.

    Each full decode allocates up to the pixel limit; the slots bound how many such
    allocations can stack up at once across threads (web requests, data loaders).
    """
    global _slots
    wanted = decode_concurrency()
    with _slots_lock:
        if _slots is None or _slots[0] != wanted:
            _slots = (wanted, threading.BoundedSemaphore(wanted))
        semaphore = _slots[1]
    with semaphore:
        yield


def check_pixels(label: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image whose header gives an empty size or more than ``max_pixels``."""
    if width <= 0 or height <= 0:
        raise NotAnImageError(f"{label}: the header claims an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label}: {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit of "
            f"{max_pixels / 1e6:.1f} megapixels (refused before decoding, a decompression-bomb guard)"
        )


# A marker in JPEG entropy-coded data: 0xFF then neither a stuffed 0x00, a fill byte 0xFF, a
# restart marker (RST0..7) nor TEM. (No "\xff+": that form is 30 times slower on 20 MB.)
_JPEG_MARKER = re.compile(rb"\xff[^\x00\x01\xd0-\xd7\xff]")


def jpeg_scan_count(data: bytes, stop_after: int = MAX_JPEG_SCANS) -> int:
    """How many scans (SOS segments) the first image of a JPEG stream has, from its markers.

    Walks the marker segments by their lengths and skips entropy-coded data with a regular
    expression, so it costs milliseconds even for a 20 MB file; stops counting past
    ``stop_after``. An embedded EXIF thumbnail lives inside an APP1 segment and is not counted.
    """
    if not data.startswith(b"\xff\xd8"):
        return 0
    pos, end, scans = 2, len(data), 0
    while pos + 4 <= end:
        if (
            data[pos] != 0xFF
            or data[pos + 1] in (0x00, 0x01, 0xFF)
            or 0xD0 <= data[pos + 1] <= 0xD7
        ):
            found = _JPEG_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
            continue
        marker = data[pos + 1]
        if marker == 0xD9:  # end of image: an MPO's other pictures follow, not decoded
            break
        if marker == 0xD8:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            break  # corrupt: the decoder will say so
        if marker == 0xDA:
            scans += 1
            if scans > stop_after:
                break
        pos += 2 + length
    return scans


def check_jpeg_scans(data: bytes, label: str, *, limit: int = MAX_JPEG_SCANS) -> None:
    """AbnormalEncodingError when a JPEG has more than ``limit`` scans (refused before decoding)."""
    scans = jpeg_scan_count(data, stop_after=limit)
    if scans > limit:
        raise AbnormalEncodingError(
            f"{label}: the JPEG is encoded abnormally (more than {limit} scans; cameras write "
            "1 to about 10), which would take far too long to decode; refused before decoding. "
            "Save the photo again as an ordinary JPEG or PNG"
        )


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (16-bit scaled, alpha composited on black)."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        gray = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            top = 65535.0
        elif mode == "F":
            top = 1.0 if gray.size and gray.max() <= 1.0 else 255.0
        else:
            top = 65535.0 if gray.size and gray.max() > 255 else 255.0
        gray8 = np.clip(gray * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray8[:, :, None], 3, axis=2))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, rgba)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
