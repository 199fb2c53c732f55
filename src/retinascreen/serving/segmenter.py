"""Vessel and lesion maps of fundus photographs: the :class:`Segmenter`.

A Segmenter loads a segmentation model (a ``.keras`` or ``.onnx`` file whose model card says
``task: segmentation``; None = the bundled ``vessels`` or ``lesions`` model) and turns a
photograph into a :class:`Segmentation`: one probability map per class on the same fundus crop
the grading :class:`~retinascreen.serving.predictor.Predictor` uses, masks at the card's
thresholds, an overlay and the vessel density::

    >>> from retinascreen import Segmenter
    >>> s = Segmenter().segment("eye.png")          # the bundled vessel model
    >>> s.maps["vessels"].shape, s.vessel_density()
    ((512, 512), 0.118)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retinascreen.data.photo import FundusPhoto, PhotoInput
from retinascreen.data.rim import field_rim
from retinascreen.errors import ModelError
from retinascreen.models.engines import BUNDLED_SEGMENTERS as BUNDLED
from retinascreen.models.engines import bundled_segmenter, flip_averaged
from retinascreen.serving.task import ModelTask

__all__ = ["BUNDLED", "CLASS_COLOURS", "Segmentation", "Segmenter", "bundled_path", "legend"]

# The network halves the picture this many times: its side must be a multiple of this.
MULTIPLE = 16
# Overlay colours (RGB) of each class; others get a colour from FALLBACK_COLOURS.
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "vessels": (0, 255, 120),
    "microaneurysm": (255, 40, 40),
    "haemorrhage": (170, 0, 255),
    "hard_exudate": (255, 235, 0),
    "cotton_wool": (120, 220, 255),
    "venous_beading": (255, 140, 0),
    "irma": (255, 0, 170),
    "neovascularisation": (0, 160, 255),
    "preretinal_haemorrhage": (255, 255, 255),
}
FALLBACK_COLOURS = ((0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 255, 0))
# The same colours in words, for legends.
COLOUR_WORDS = {
    "vessels": "green",
    "microaneurysm": "red",
    "haemorrhage": "purple",
    "hard_exudate": "yellow",
    "cotton_wool": "light blue",
    "venous_beading": "orange",
    "irma": "pink",
    "neovascularisation": "blue",
    "preretinal_haemorrhage": "white",
}


def legend(classes: list[str] | tuple[str, ...]) -> str:
    """``"microaneurysm red, haemorrhage purple"``: each class with its overlay colour."""
    return ", ".join(
        f"{name.replace('_', ' ')} {COLOUR_WORDS[name]}" if name in COLOUR_WORDS else name
        for name in classes
    )


@dataclass(frozen=True)
class Segmentation:
    """Per-class maps of one photograph, aligned with ``view`` (the cropped fundus, RGB uint8).

    ``maps``: float32 probabilities 0..1 per class; ``masks``: bool at the card's thresholds;
    ``field``: bool field-of-view mask; ``model``: name, version, sha256, training_data and
    synthetic of the model that drew the maps.
    """

    maps: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    view: np.ndarray
    field: np.ndarray
    model: dict[str, Any]
    # Each class's threshold (the card's), and the photo the maps were drawn on (None: unknown).
    thresholds: dict[str, float] | None = None
    photo: FundusPhoto | None = None

    def in_photo_frame(self) -> Segmentation:
        """The same maps at the photo's own size and position, pixel for pixel (0 outside the
        field); ``view`` is the photo and ``field`` its field of view.

        A map laid over the original file lines up with it. Needs ``photo`` (set by
        :meth:`Segmenter.segment`).
        """
        photo = self.photo
        if photo is None:
            raise ValueError("this segmentation does not know its photo: use Segmenter.segment")
        field = photo.photo_field()
        maps = {name: photo.to_photo_frame(prob) for name, prob in self.maps.items()}
        thresholds = self.thresholds or {}
        masks = {
            name: (
                (maps[name] >= thresholds[name]) & field
                if name in thresholds
                else photo.to_photo_frame(mask)
            )
            for name, mask in self.masks.items()
        }
        return Segmentation(maps, masks, photo.rgb, field, self.model, self.thresholds, photo)

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The view with each class's mask painted in its colour (RGB uint8, same size)."""
        alpha = float(np.clip(alpha, 0.0, 1.0))
        out = self.view.astype(np.float32)
        for i, (name, mask) in enumerate(self.masks.items()):
            colour = CLASS_COLOURS.get(name, FALLBACK_COLOURS[i % len(FALLBACK_COLOURS)])
            paint = mask & self.field
            out[paint] = (1 - alpha) * out[paint] + alpha * np.asarray(colour, np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    def vessel_density(self) -> float | None:
        """Share of the field of view that is vessel (None without a vessel class or field)."""
        mask = self.masks.get("vessels")
        pixels = int(np.count_nonzero(self.field))
        if mask is None or pixels == 0:
            return None
        return float(np.count_nonzero(mask & self.field) / pixels)

    def areas(self) -> dict[str, float]:
        """Share of the field of view each class's mask covers."""
        pixels = max(1, int(np.count_nonzero(self.field)))
        return {
            name: float(np.count_nonzero(mask & self.field) / pixels)
            for name, mask in self.masks.items()
        }


def network_side(input_size: int) -> int:
    """The side a segmentation network runs at: ``input_size`` rounded to a multiple of 16."""
    return max(MULTIPLE, round(input_size / MULTIPLE) * MULTIPLE)


def bundled_path(what: str) -> Path:
    """The bundled ``vessels`` or ``lesions`` model file, its ONNX twin when present (3-5x
    faster); a ModelError when the name is unknown or the file is missing."""
    if what not in BUNDLED:
        raise ModelError(f"unknown segmentation {what!r}; choose one of: {', '.join(BUNDLED)}")
    path = bundled_segmenter(what)
    twin = path.with_suffix(".onnx")
    return twin if twin.is_file() else path


class Segmenter(ModelTask):
    """Draws vessel or lesion maps with one segmentation model; see the module docstring.

    ``model``: a ``.keras`` / ``.onnx`` file (ONNX Runtime runs ``.onnx``), or None for the
    bundled model named by ``what`` (``vessels`` or ``lesions``; ignored with a model file,
    whose card names its classes). ``threads``: intra-op threads (None = all cores).
    ``flip_average=False``: one pass per photo even when the card asks for flip averaging
    (half the model time; the card's figures and thresholds were measured on averaged maps).
    """

    task = "segmentation"
    card_required = True

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        what: str = "vessels",
        *,
        threads: int | None = None,
        flip_average: bool = True,
    ) -> None:
        path = bundled_path(what) if model is None else Path(model).expanduser()
        if not path.is_file():
            raise ModelError(f"segmentation model not found: {path}")
        if path.suffix.lower() not in (".keras", ".onnx"):
            raise ModelError(f"{path.name}: not a model file (expected .keras or .onnx)")
        super().__init__(path, threads=threads)
        card = self.card
        assert card is not None  # card_required
        thresholds = list(card.thresholds or [0.5] * len(card.classes))
        if not card.classes or len(thresholds) != len(card.classes):
            raise ModelError(
                f"{path.name}: its card needs one threshold per class "
                f"(classes {card.classes}, thresholds {card.thresholds})"
            )
        self.classes: tuple[str, ...] = tuple(card.classes)
        self.thresholds: dict[str, float] = dict(zip(self.classes, thresholds, strict=True))
        self.input_size: int = int(card.input_size)
        self.size: int = network_side(self.input_size)
        self.preprocessing = self.preprocessing_at(self.size)
        # Measured on real masks (IDRiD test) where the card has it: shown with the maps.
        self.test_aupr: dict[str, float] = dict((card.metrics or {}).get("test_aupr") or {})
        # The outer share of the field's radius the model leaves out (its card's
        # ``ignore_rim``; 0 = none): vignetting there looks like exudates.
        self.ignore_rim: float = float(card.extra.get("ignore_rim", 0.0) or 0.0)
        if not 0.0 <= self.ignore_rim < 0.5:
            raise ModelError(f"{path.name}: its card's ignore_rim must be in [0, 0.5)")
        # The card's ``flip_average``: maps averaged with the mirrored photo's (measured better
        # on IDRiD's test photos for the bundled lesion model; twice the cost).
        self.flip_average: bool = flip_average and bool(card.extra.get("flip_average", False))

    def __repr__(self) -> str:
        return f"Segmenter({str(self.model_path)!r}, classes={list(self.classes)})"

    def segment(self, image: PhotoInput) -> Segmentation:
        """The maps of one photograph (path, bytes, RGB array or
        :class:`~retinascreen.data.photo.FundusPhoto`, whose field and crops are reused);
        typed errors on bad input. The maps are on the model's fundus crop; see
        :meth:`Segmentation.in_photo_frame` for the photo's own frame."""
        photo = FundusPhoto.read(image)
        batch = np.asarray(photo.crop(self.preprocessing), np.float32)[None]
        out = flip_averaged(self._engine, batch) if self.flip_average else self._engine(batch)
        if out.ndim != 4 or out.shape[-1] != len(self.classes):
            raise ModelError(
                f"{self.model_path.name}: model outputs shape {out.shape}, expected "
                f"(1, H, W, {len(self.classes)}) maps for {list(self.classes)}"
            )
        view = photo.view(self.input_size)
        field = photo.field(self.input_size)
        drawn = field & ~field_rim(field, self.ignore_rim) if self.ignore_rim else field
        maps: dict[str, np.ndarray] = {}
        masks: dict[str, np.ndarray] = {}
        for i, name in enumerate(self.classes):
            prob = np.ascontiguousarray(out[0, :, :, i], dtype=np.float32)
            if prob.shape != (self.input_size, self.input_size):
                side = (self.input_size, self.input_size)
                prob = np.asarray(
                    cv2.resize(prob, side, interpolation=cv2.INTER_LINEAR), dtype=np.float32
                )
            maps[name] = (np.clip(np.nan_to_num(prob), 0.0, 1.0) * drawn).astype(np.float32)
            masks[name] = (maps[name] >= self.thresholds[name]) & drawn
        model = self.model_info.summary()
        if self.test_aupr:
            model["test_aupr"] = dict(self.test_aupr)
        return Segmentation(maps, masks, view, field, model, dict(self.thresholds), photo)
