"""Photo files under ``instance/photos``: generated names, atomic with the database row."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

# Formats a browser shows as they are; anything else (TIFF, BMP, DICOM) is stored as PNG.
_BROWSER_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}


def photo_bytes(data: bytes, rgb: np.ndarray) -> tuple[bytes, str]:
    """The bytes to keep for an upload and their extension.

    JPEG, PNG and WebP are kept byte for byte; other formats are re-encoded as PNG from the
    decoded pixels so every page and report can show them.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            suffix = _BROWSER_FORMATS.get(image.format or "")
    except Exception:  # DICOM and other formats PIL does not open
        suffix = None
    if suffix:
        return data, suffix
    return png_bytes(rgb), ".png"


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an RGB uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def new_name(suffix: str) -> str:
    """A fresh file name: uuid4 hex plus a known-safe extension (never the uploaded name)."""
    if suffix not in {".jpg", ".png", ".webp"}:
        raise ValueError(f"unexpected photo extension {suffix!r}")
    return uuid.uuid4().hex + suffix


class PhotoStore:
    """A folder of photos and heat maps addressed by generated names."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        """Path of a stored file; refuses names that are not plain generated names."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad stored file name {name!r}")
        return self.folder / name

    @contextmanager
    def staged(self, files: dict[str, bytes]) -> Iterator[None]:
        """Write ``files`` (name -> bytes) under temporary names; publish them if the block succeeds.

        Use around the database transaction: the block commits the row, then the files are
        renamed to their final names. On any error, every temporary and final file is removed,
        so neither a row without its photo nor an orphan photo is left behind.
        """
        temps: dict[str, Path] = {}
        try:
            for name, data in files.items():
                temp = self.folder / f".{uuid.uuid4().hex}.tmp"
                temps[name] = temp
                with open(temp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
            for name, temp in temps.items():
                os.replace(temp, self.path(name))
            yield
        except BaseException:
            for name, temp in temps.items():
                temp.unlink(missing_ok=True)
                self.path(name).unlink(missing_ok=True)
            raise
