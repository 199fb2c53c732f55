"""IDRiD "A. Segmentation": photos with pixel masks of four lesions and the optic disc.

The published layout (Porwal et al., *Data* 3(3):25, 2018; CC BY 4.0)::

    A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_NN.jpg
    A. Segmentation/2. All Segmentation Groundtruths/<split>/
        {1. Microaneurysms,2. Haemorrhages,3. Hard Exudates,4. Soft Exudates,5. Optic Disc}/
        IDRiD_NN_{MA,HE,EX,SE,OD}.tif

A missing mask file means the lesion is absent from that photo (as published).
:func:`read_idrid_masks` lists the photos of a split; :meth:`IdridPhoto.load` decodes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retinascreen.data.images import load_image
from retinascreen.errors import DatasetError

__all__ = ["MASK_CLASSES", "SPLITS", "IdridPhoto", "read_idrid_masks"]

# Our class name -> (IDRiD folder, file suffix).
MASK_CLASSES: dict[str, tuple[str, str]] = {
    "microaneurysm": ("1. Microaneurysms", "MA"),
    "haemorrhage": ("2. Haemorrhages", "HE"),
    "hard_exudate": ("3. Hard Exudates", "EX"),
    "cotton_wool": ("4. Soft Exudates", "SE"),
    "optic_disc": ("5. Optic Disc", "OD"),
}
SPLITS = {"train": "a. Training Set", "test": "b. Testing Set"}
_ROOT = "A. Segmentation"


@dataclass(frozen=True)
class IdridPhoto:
    """One photo of the segmentation set: its file and the mask files that exist."""

    name: str
    image: Path
    masks: dict[str, Path]

    def load(
        self, classes: tuple[str, ...] | list[str]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """RGB uint8 pixels and one boolean mask per class (all False where none is published)."""
        import cv2

        rgb = load_image(self.image)
        h, w = rgb.shape[:2]
        out: dict[str, np.ndarray] = {}
        for name in classes:
            if name not in MASK_CLASSES:
                raise DatasetError(
                    f"unknown IDRiD mask {name!r}; choose from {', '.join(MASK_CLASSES)}"
                )
            path = self.masks.get(name)
            if path is None:
                out[name] = np.zeros((h, w), bool)
                continue
            mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if mask is None:
                raise DatasetError(f"{path}: not a readable mask image")
            if mask.ndim == 3:
                mask = mask.max(axis=2)
            if mask.shape != (h, w):
                raise DatasetError(
                    f"{path.name}: mask is {mask.shape[1]}x{mask.shape[0]}, photo {w}x{h}"
                )
            out[name] = mask > 0
        return rgb, out


def read_idrid_masks(root: str | Path, split: str = "train") -> list[IdridPhoto]:
    """The photos of ``split`` (``train`` / ``test``) under ``root`` (the folder holding
    ``A. Segmentation``, or that folder itself), sorted by name; DatasetError when absent."""
    if split not in SPLITS:
        raise DatasetError(f"unknown IDRiD split {split!r}; choose train or test")
    base = Path(root)
    if (base / _ROOT).is_dir():
        base = base / _ROOT
    images = base / "1. Original Images" / SPLITS[split]
    truth = base / "2. All Segmentation Groundtruths" / SPLITS[split]
    if not images.is_dir() or not truth.is_dir():
        raise DatasetError(
            f"{root}: not the IDRiD segmentation layout (expected '{_ROOT}/1. Original Images/"
            f"{SPLITS[split]}' and '2. All Segmentation Groundtruths/{SPLITS[split]}')"
        )
    photos = []
    for image in sorted(images.glob("*.jpg")):
        masks = {}
        for name, (folder, suffix) in MASK_CLASSES.items():
            path = truth / folder / f"{image.stem}_{suffix}.tif"
            if path.is_file():
                masks[name] = path
        photos.append(IdridPhoto(image.stem, image, masks))
    if not photos:
        raise DatasetError(f"{images}: no IDRiD photos (*.jpg)")
    return photos


def crop_photo(
    photo: IdridPhoto, size: int, classes: tuple[str, ...] | list[str], *, clahe: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's view of ``photo``: the fundus crop (size, size, 3) uint8 (CLAHE after the
    crop when ``clahe``), its masks (size, size, C) bool cut by the same square, and the field
    of view (size, size) bool, as :class:`~retinascreen.serving.segmenter.Segmenter` crops."""
    from retinascreen.data.drive import crop_with_masks
    from retinascreen.data.fundus import apply_clahe, field_of_view, find_disc

    rgb, masks = photo.load(classes)
    disc = find_disc(rgb)
    view, cut = crop_with_masks(rgb, masks, size, disc=disc)
    field = field_of_view(rgb, size, disc=disc)
    if clahe:
        view = apply_clahe(view)
    stack = (
        np.stack([cut[name] for name in classes], axis=-1)
        if classes
        else np.zeros((size, size, 0), bool)
    )
    return view, stack & field[:, :, None], field
