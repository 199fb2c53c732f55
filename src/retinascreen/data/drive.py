"""The DRIVE vessel data set (Staal et al. 2004) and cropping photos together with their masks.

Layout (``<root>/training`` and ``<root>/test``): ``images/NN_training.tif|png`` (RGB),
``1st_manual/NN_manual1.gif`` (vessels), ``mask/NN_*_mask.gif`` (field of view) and, in
``test/`` only, ``2nd_manual/NN_manual2.gif`` (a second observer). The photographs are read
where they are; nothing is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from retinascreen.data.crop import crop_box, crop_square
from retinascreen.data.field import Disc, find_disc
from retinascreen.errors import DatasetError

SPLITS = ("training", "test")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


@dataclass(frozen=True)
class DrivePhoto:
    """One DRIVE photograph with its field-of-view mask and manual vessel annotation(s)."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    vessels: np.ndarray  # (H, W) bool, 1st observer
    field: np.ndarray  # (H, W) bool field of view
    second: np.ndarray | None = None  # (H, W) bool, 2nd observer (test set only)


def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L")) > 127


def _one(folder: Path, number: str) -> Path:
    # Some DRIVE copies name a few 2nd-observer files "vessel(N).gif" instead of "NN_manual2.gif".
    found = sorted(p for p in folder.glob(f"{number}_*") if p.is_file())
    found += [p for p in [folder / f"vessel({int(number)}).gif"] if p.is_file()]
    if not found:
        raise DatasetError(f"DRIVE: no file for photo {number} in {folder}")
    return found[0]


def read_drive(root: str | Path, split: str = "training") -> list[DrivePhoto]:
    """All photographs of a DRIVE split (``training`` or ``test``), sorted by number.

    Raises :class:`DatasetError` when the folder does not have the DRIVE layout.
    """
    if split not in SPLITS:
        raise DatasetError(f"unknown DRIVE split {split!r}; choose one of: {', '.join(SPLITS)}")
    base = Path(root) / split
    images = base / "images"
    if not images.is_dir():
        raise DatasetError(f"{base} is not a DRIVE split: it has no images/ folder")
    photos = []
    for path in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        number = path.name.split("_", 1)[0]
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        second_dir = base / "2nd_manual"
        photos.append(
            DrivePhoto(
                name=path.stem,
                image=rgb,
                vessels=_read_mask(_one(base / "1st_manual", number)),
                field=_read_mask(_one(base / "mask", number)),
                second=_read_mask(_one(second_dir, number)) if second_dir.is_dir() else None,
            )
        )
    if not photos:
        raise DatasetError(f"{images} holds no .tif/.png photographs")
    return photos


def crop_with_masks(
    rgb: np.ndarray,
    masks: dict[str, np.ndarray],
    size: int,
    *,
    disc: Disc | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The fundus crop of ``rgb`` (as :func:`~retinascreen.data.fundus.crop_fundus` cuts it)
    and each boolean mask cut by the same square, resized to ``size`` (nearest to half-cover)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    disc = disc or find_disc(rgb)
    if disc is None:
        h, w = rgb.shape[:2]
        disc = Disc(w / 2, h / 2, max(h, w) / 2 / 1.02)
    box = crop_box(rgb.shape, disc)
    view, _ = crop_square(rgb, box, size)
    out = {}
    for name, mask in masks.items():
        stacked = np.repeat((np.asarray(mask, bool) * np.uint8(255))[:, :, None], 3, axis=2)
        cut, _ = crop_square(stacked, box, size)
        out[name] = cut[:, :, 0] > 127
    return view, out
