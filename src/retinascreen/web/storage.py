"""Photo files under ``instance/photos``: generated names, published only after the row commits."""

from __future__ import annotations

import io
import logging
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retinascreen.web.private import private_folder, tighten, write_private

log = logging.getLogger(__name__)

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


# zlib level 1: the same pixels, files ~15 % larger, 5x less CPU than Pillow's default (6):
# a 576 px vessel overlay took 120 ms of an upload's ~550 ms, now 22 ms (bench/load.py).
PNG_COMPRESS_LEVEL = 1


def png_bytes(rgb: np.ndarray) -> bytes:
    """PNG encoding of an RGB uint8 array (lossless; fast rather than smallest)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL
    )
    return buffer.getvalue()


def new_name(suffix: str) -> str:
    """A fresh file name: uuid4 hex plus a known-safe extension (never the uploaded name)."""
    if suffix not in {".jpg", ".png", ".webp"}:
        raise ValueError(f"unexpected photo extension {suffix!r}")
    return uuid.uuid4().hex + suffix


class PhotoStore:
    """A folder of photos and heat maps addressed by generated names."""

    def __init__(self, folder: Path) -> None:
        self.folder = private_folder(Path(folder))

    def path(self, name: str) -> Path:
        """Path of a stored file; refuses names that are not plain generated names."""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"bad stored file name {name!r}")
        return self.folder / name

    def staging_path(self, name: str) -> Path:
        """Where ``name`` waits, unpublished, until its database row is committed."""
        return self.folder / f".{self.path(name).name}{STAGED_SUFFIX}"

    @contextmanager
    def staged(self, files: dict[str, bytes]) -> Iterator[None]:
        """Write ``files`` (name -> bytes) under staging names; publish them if the block succeeds.

        Use around the database transaction: the block commits the row, then the files are
        renamed to their final names. A published file therefore always has its row; a crash
        between commit and rename leaves a staged file that :func:`sweep_photos` publishes (its
        row exists) or removes (it does not). On an error in the block the staged files go.
        """
        staged: dict[str, Path] = {}
        try:
            for name, data in files.items():
                temp = self.staging_path(name)
                staged[name] = temp
                write_private(temp, data)  # 0600: patient data
            yield
        except BaseException:
            for temp in staged.values():
                temp.unlink(missing_ok=True)
            raise
        for name, temp in staged.items():
            os.replace(temp, self.path(name))

    def sweep(self, referenced: set[str]) -> tuple[list[str], list[str]]:
        """Finish or undo interrupted uploads; returns (published, removed) file names.

        Staged files whose name a database row holds are published; other staged files,
        leftovers of the older ``.*.tmp`` scheme and published files no row refers to are
        removed. Run at start-up only, while no request is writing.
        """
        published: list[str] = []
        removed: list[str] = []
        for entry in sorted(self.folder.iterdir()):
            if not entry.is_file():
                continue
            name = entry.name
            if name.endswith(STAGED_SUFFIX) and name.startswith("."):
                final = name[1 : -len(STAGED_SUFFIX)]
                if final in referenced and _GENERATED.fullmatch(final):
                    os.replace(entry, self.folder / final)
                    tighten(self.folder / final)
                    published.append(final)
                    continue
            elif name in referenced:
                tighten(entry)  # a stored photo (an older version wrote them 0644)
                continue
            elif not _GENERATED.fullmatch(name):
                continue  # not a file this store wrote: leave it alone
            entry.unlink(missing_ok=True)
            removed.append(name)
        return published, removed


STAGED_SUFFIX = ".staged"
_GENERATED = re.compile(r"[0-9a-f]{32}\.(?:jpg|png|webp)|\.[0-9a-f]{32}\.tmp")


def sweep_photos(engine: Engine, store: PhotoStore) -> tuple[list[str], list[str]]:
    """:meth:`PhotoStore.sweep` with the names the database's screenings refer to; logs it."""
    from retinascreen.web.models import Screening

    with Session(engine) as db:
        columns = [getattr(Screening, name) for name in Screening.FILE_COLUMNS]
        rows = db.execute(select(*columns)).all()
    referenced = {name for row in rows for name in row if name}
    published, removed = store.sweep(referenced)
    if published or removed:
        log.warning(
            "photo sweep: published %d committed upload(s), removed %d unreferenced file(s)",
            len(published),
            len(removed),
        )
    return published, removed
