"""Safe decoding of photographs into RGB ``uint8`` arrays, and atomic saving.

Every reader checks the pixel count from the file header *before* decoding (a decompression
bomb guard), counts a JPEG's scans from its markers before decoding (a progressive JPEG with
thousands of near-empty scans costs seconds of CPU per megapixel: a "scan bomb"), refuses PNG
metadata that inflates past Pillow's limits, and turns each way a file can be bad into one of
the typed errors in :mod:`retinascreen.errors`, with a message that names the file.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from retinascreen.data.pixels import (
    DECODE_CONCURRENCY_ENV,
    DEFAULT_DECODE_CONCURRENCY,
    MAX_JPEG_SCANS,
    check_jpeg_scans,
    check_pixels,
    decode_concurrency,
    decode_slot,
    jpeg_scan_count,
    pil_to_rgb,
)
from retinascreen.errors import (
    AbnormalEncodingError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedImageError,
    UnsupportedFormatError,
)

__all__ = [  # the decoding guards live in data/pixels.py (shared with DICOM); kept here too
    "DECODE_CONCURRENCY_ENV",
    "DEFAULT_DECODE_CONCURRENCY",
    "MAX_JPEG_SCANS",
    "MAX_PIXELS",
    "SUPPORTED_SUFFIXES",
    "check_jpeg_scans",
    "decode_concurrency",
    "decode_slot",
    "jpeg_scan_count",
    "load_image",
    "save_image",
]

MAX_PIXELS = 50_000_000
SUPPORTED_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom")

# Pillow format names we read; MPO is the multi-picture JPEG many cameras write, DIB a BMP.
_PIL_FORMATS = {"JPEG", "MPO", "PNG", "TIFF", "BMP", "DIB", "WEBP"}
_DICOM_SUFFIXES = (".dcm", ".dicom")

# Magic numbers of the formats we read: a file that starts like one but cannot be parsed is
# truncated, not "not an image".
_SUPPORTED_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"BM",
)
# Image formats users may try that we deliberately do not read.
_UNSUPPORTED_MAGIC = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"8BPS": "Photoshop PSD",
    b"\x00\x00\x01\x00": "ICO",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"\xff\x4f\xff\x51": "JPEG 2000 codestream",
    b"%PDF": "PDF",
    b"qoif": "QOI",
}


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int = MAX_PIXELS,
    name: str | None = None,
) -> np.ndarray:
    """Decode a photograph (path or bytes) into an RGB ``uint8`` array of shape (H, W, 3).

    Reads JPEG, PNG, TIFF, BMP, WebP and DICOM; applies the EXIF orientation, scales 16-bit
    data to 8 bits and converts grayscale, palette and RGBA (composited on black) to RGB.
    ``name`` is used in error messages (defaults to the path, or ``<bytes>``).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = name or "<bytes>"
        suffix = Path(name).suffix.lower() if name else ""
    else:
        path = Path(source)
        label = name or str(path)
        suffix = path.suffix.lower()
        data = path.read_bytes()  # FileNotFoundError / IsADirectoryError speak for themselves
    if not data:
        raise EmptyImageError(f"{label}: the file is empty (0 bytes)")
    if data[128:132] == b"DICM" or (suffix in _DICOM_SUFFIXES and not _looks_like_pil(data)):
        return _load_dicom(data, label, max_pixels)
    return _load_pil(data, label, max_pixels)


def _looks_like_pil(data: bytes) -> bool:
    return data.startswith(_SUPPORTED_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


# What Pillow raises when PNG text (tEXt/zTXt/iTXt) or colour-profile (iCCP) chunks inflate past
# its limits: a metadata decompression bomb, not a truncated file.
_METADATA_BOMB = ("Decompressed data too large", "Too much memory used in text chunks")


def _metadata_bomb(exc: BaseException, label: str) -> AbnormalEncodingError | None:
    if isinstance(exc, ValueError) and str(exc).startswith(_METADATA_BOMB):
        return AbnormalEncodingError(
            f"{label}: the file's metadata (text or colour-profile chunks) is abnormally large "
            "when unpacked; refused (a decompression-bomb guard). Save the photo again without "
            "the extra metadata"
        )
    return None


def _not_an_image(data: bytes, label: str) -> Exception:
    for magic, kind in _UNSUPPORTED_MAGIC.items():
        if data.startswith(magic):
            return UnsupportedFormatError(
                f"{label}: {kind} files are not supported; use JPEG, PNG, TIFF, BMP, WebP or DICOM"
            )
    if _looks_like_pil(data):
        return TruncatedImageError(f"{label}: the file starts like an image but is cut short")
    if data[4:8] == b"ftyp":
        return UnsupportedFormatError(
            f"{label}: HEIC/AVIF/video files are not supported; use JPEG, PNG, TIFF, BMP, WebP or DICOM"
        )
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:4096].lower():
        return NotAnImageError(f"{label}: this is an SVG drawing, not a photograph")
    kind = "not an image (it is a text file)" if _is_text(data[:4096]) else "not an image"
    return NotAnImageError(
        f"{label}: {kind}; expected a JPEG, PNG, TIFF, BMP, WebP or DICOM photograph"
    )


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    control = sum(1 for byte in head if byte < 32 and byte not in (9, 10, 13))
    return control <= 0.02 * len(head)


def _load_pil(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image: Image.Image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(
                f"{label}: over the pixel limit of {max_pixels / 1e6:.1f} megapixels ({exc})"
            ) from None
        except (UnidentifiedImageError, SyntaxError, ValueError, OSError) as exc:
            raise (_metadata_bomb(exc, label) or _not_an_image(data, label)) from None
        with image:
            if image.format not in _PIL_FORMATS:
                raise UnsupportedFormatError(
                    f"{label}: {image.format} files are not supported; "
                    "use JPEG, PNG, TIFF, BMP, WebP or DICOM"
                )
            check_pixels(label, image.width, image.height, max_pixels)
            if image.format in ("JPEG", "MPO"):
                check_jpeg_scans(data, label)
            try:
                with decode_slot():
                    image.load()
                    image = ImageOps.exif_transpose(image) or image
                    return pil_to_rgb(image)
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(f"{label}: over the pixel limit ({exc})") from None
            except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
                bomb = _metadata_bomb(exc, label)
                if bomb is not None:
                    raise bomb from None
                raise TruncatedImageError(
                    f"{label}: the {image.format} data is truncated or corrupt ({exc})"
                ) from None


def _load_dicom(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    from retinascreen.data.dicom import load_dicom

    return load_dicom(data, label, max_pixels)


def save_image(path: str | os.PathLike[str], rgb: np.ndarray, *, quality: int = 95) -> Path:
    """Write an RGB uint8 array as PNG/JPEG/TIFF/BMP/WebP (by suffix), atomically.

    The image goes to a temporary file in the same folder which is then renamed, so a crash
    never leaves a half-written image behind.
    """
    path = Path(path)
    formats = {
        ".png": "PNG",
        ".jpg": "JPEG",
        ".jpeg": "JPEG",
        ".tif": "TIFF",
        ".tiff": "TIFF",
        ".bmp": "BMP",
        ".webp": "WEBP",
    }
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedFormatError(
            f"{path}: cannot write {path.suffix or 'files without a suffix'}; use .png or .jpg"
        )
    array = np.asarray(rgb)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    image = Image.fromarray(array if array.ndim == 3 else array, "RGB" if array.ndim == 3 else "L")
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            image.save(out, format=fmt, **options)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
