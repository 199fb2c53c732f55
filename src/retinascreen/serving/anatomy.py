"""Where the optic disc and the fovea are, and which eye a photograph shows.

:class:`AnatomyFinder` runs the bundled optic-disc segmenter (learned from IDRiD's optic-disc
masks; see its model card) on the fundus crop, takes the disc's centre and diameter from the
most probable region, finds the fovea from the anatomy (2.5 disc diameters temporal to the disc
and a little below it, at the darkest vessel-free spot; :mod:`retinascreen.data.anatomy`) and
calls the eye left or right from the side the disc lies on relative to the fovea::

    >>> a = AnatomyFinder().find("eye.jpg")
    >>> a.to_dict()
    {'disc': {'centre': [1630.2, 610.8], 'diameter': 228.4, 'confidence': 0.93},
     'fovea': {'centre': [1002.5, 688.0], 'confidence': 0.81},
     'laterality': 'right', 'confidence': 0.81}

All positions are in the input photo's pixel coordinates (SPEC ``anatomy``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from retinascreen.data.fundus import CropBox
from retinascreen.data.photo import PhotoInput

__all__ = ["Anatomy", "AnatomyFinder", "anatomy_from_map", "draw_anatomy", "laterality_note"]

# Below this confidence the laterality is reported but not used to fill in an unknown eye.
LATERALITY_MIN_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Anatomy:
    """Disc and fovea of one photograph in its own pixel coordinates (see :meth:`to_dict`).

    ``disc_outline``: the disc's boundary (N, 2) x/y; ``fovea_centre`` None when no fovea
    could be placed (then ``laterality`` is None too); ``confidence`` is the laterality's.
    """

    disc_centre: tuple[float, float]
    disc_diameter: float
    disc_confidence: float
    disc_outline: np.ndarray
    fovea_centre: tuple[float, float] | None
    fovea_confidence: float
    laterality: str | None
    confidence: float
    # What the laterality rests on: the disc's side of the fovea, or (no fovea placed) the
    # disc's side of the field's centre.
    basis: str = "fovea"

    def to_dict(self) -> dict[str, Any]:
        """SPEC ``anatomy``: ``{"disc": {"centre", "diameter", "confidence"}, "fovea":
        {"centre", "confidence"} | null, "laterality", "confidence"}``."""
        fovea = None
        if self.fovea_centre is not None:
            fovea = {
                "centre": [round(v, 1) for v in self.fovea_centre],
                "confidence": round(self.fovea_confidence, 3),
            }
        return {
            "disc": {
                "centre": [round(v, 1) for v in self.disc_centre],
                "diameter": round(self.disc_diameter, 1),
                "confidence": round(self.disc_confidence, 3),
            },
            "fovea": fovea,
            "laterality": self.laterality,
            "confidence": round(self.confidence, 3),
            "laterality_basis": self.basis if self.laterality else None,
        }

    def distance_dd(self, x: float, y: float) -> float:
        """Distance of photo pixel (x, y) from the fovea in disc diameters (inf without one)."""
        if self.fovea_centre is None or self.disc_diameter <= 0:
            return math.inf
        fx, fy = self.fovea_centre
        return math.hypot(x - fx, y - fy) / self.disc_diameter


class AnatomyFinder:
    """Finds the disc, the fovea and the laterality; ``model``: a disc segmentation model file
    (None = the bundled ``disc`` model); ``threads``: intra-op threads."""

    def __init__(
        self, model: str | os.PathLike[str] | None = None, *, threads: int | None = None
    ) -> None:
        from retinascreen.serving.segmenter import Segmenter

        self.segmenter = Segmenter(model, "disc", threads=threads)
        if "optic_disc" not in self.segmenter.classes:
            raise_model = self.segmenter.model_path.name
            from retinascreen.errors import ModelError

            raise ModelError(f"{raise_model} does not segment the optic disc (its classes: "
                             f"{', '.join(self.segmenter.classes)})")  # fmt: skip
        self.model_info = self.segmenter.model_info.summary()

    def find(self, image: PhotoInput) -> Anatomy | None:
        """The anatomy of one photograph (path, bytes, RGB array or
        :class:`~retinascreen.data.photo.FundusPhoto`, whose field and crops are reused);
        None when no disc shows."""
        from retinascreen.data.photo import FundusPhoto

        photo = FundusPhoto.read(image)
        seg = self.segmenter.segment(photo)
        return anatomy_from_map(
            seg.maps["optic_disc"], seg.view, seg.field, photo.box,
            self.segmenter.thresholds["optic_disc"],
        )  # fmt: skip


def anatomy_from_map(
    prob: np.ndarray, view: np.ndarray, field: np.ndarray, box: CropBox, threshold: float
) -> Anatomy | None:
    """The anatomy from a disc probability map ``prob`` drawn on the square crop ``view`` of
    ``box`` (both (S, S); ``field`` its field of view); None when no disc shows.

    Pure maths (no model), so a cached disc map can be re-read with another rule.
    """
    from retinascreen.data.anatomy import (
        crop_to_photo,
        disc_from_map,
        disc_side,
        find_fovea,
        laterality_of,
        photo_scale,
    )

    size = int(field.shape[0])
    disc = disc_from_map(prob, field, threshold, view)
    if disc is None:
        return None
    scale = photo_scale(box, size)
    outline = np.array([crop_to_photo(box, size, float(x), float(y)) for x, y in disc.outline])
    fovea = find_fovea(view, field, disc)
    centre = crop_to_photo(box, size, disc.cx, disc.cy)
    side, strength = disc_side(disc, field)
    if fovea is None:  # the disc's side of the field alone (macula-centred photos)
        lateral = None if strength < 0.25 else ("right" if side > 0 else "left")
        confidence = 0.8 * disc.confidence * strength if lateral else 0.0
        return Anatomy(centre, disc.diameter * scale, disc.confidence, outline, None, 0.0,
                       lateral, round(confidence, 3), "disc side")  # fmt: skip
    fovea_centre = crop_to_photo(box, size, fovea.x, fovea.y)
    laterality = laterality_of(centre[0], fovea_centre[0])
    confidence = fovea.confidence
    if strength >= 0.5 and (side > 0) != (laterality == "right"):
        confidence *= 0.4  # the disc's side of the field says the other eye
    return Anatomy(
        disc_centre=centre,
        disc_diameter=disc.diameter * scale,
        disc_confidence=disc.confidence,
        disc_outline=outline,
        fovea_centre=fovea_centre,
        fovea_confidence=fovea.confidence,
        laterality=laterality,
        confidence=round(confidence, 3),
    )


def laterality_note(entered: str | None, anatomy: dict[str, Any] | None) -> str | None:
    """A warning when the eye the user entered and the one the photo shows disagree (None when
    they agree, either is unknown, or the photo's laterality is not confident)."""
    if not entered or not anatomy or not anatomy.get("laterality"):
        return None
    seen = str(anatomy["laterality"])
    if str(entered).lower() == seen:
        return None
    if float(anatomy.get("confidence") or 0) < LATERALITY_MIN_CONFIDENCE:
        return None
    return (
        f"Entered as the {entered.lower()} eye, but the photo looks like a {seen} eye "
        f"(optic disc on the {'right' if seen == 'right' else 'left'} of the fovea, "
        f"confidence {float(anatomy['confidence']):.0%}): check the eye."
    )


def draw_anatomy(rgb: np.ndarray, anatomy: Anatomy) -> np.ndarray:
    """A copy of ``rgb`` with the disc outline, the fovea mark and the 1-disc-diameter macular
    circle around the fovea drawn on it (lines scaled to the photo's size)."""
    import cv2

    out = np.ascontiguousarray(np.array(rgb, dtype=np.uint8, copy=True))
    thick = max(1, round(max(out.shape[:2]) / 400))
    cv2.polylines(out, [np.round(anatomy.disc_outline).astype(np.int32)], True, (0, 255, 0), thick)
    if anatomy.fovea_centre is not None:
        fx, fy = (round(v) for v in anatomy.fovea_centre)
        mark = max(8, round(anatomy.disc_diameter * 0.25))
        cv2.drawMarker(out, (fx, fy), (0, 255, 255), cv2.MARKER_CROSS, mark, thick)
        cv2.circle(out, (fx, fy), max(2, round(anatomy.disc_diameter)), (255, 255, 0), thick)
    return out


class EyeFiller:
    """Fills the ``eye`` of batch-screening rows whose file name did not say, from the photo's
    laterality (left blank below :data:`LATERALITY_MIN_CONFIDENCE` or when no disc is found).
    The disc model is loaded on the first photo that needs it; if it cannot be loaded the eyes
    stay blank and screening goes on."""

    def __init__(self, folder: str | os.PathLike[str], model: str | os.PathLike[str] | None = None):
        self.folder = os.fspath(folder)
        self.model = model
        self._finder: AnatomyFinder | None = None
        self._failed = False

    def fill(self, rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """The same rows, ``eye`` filled where it was empty and the photo was read."""
        import logging

        for row in rows:
            if row.get("eye") or row.get("error") or self._failed:
                continue
            try:
                if self._finder is None:
                    self._finder = AnatomyFinder(self.model, threads=None)
                found = self._finder.find(os.path.join(self.folder, row["path"]))
            except Exception as exc:  # noqa: BLE001 - the grade row stands without an eye
                logging.getLogger(__name__).warning("laterality of %s: %s", row["path"], exc)
                self._failed = self._finder is None
                continue
            if found and found.laterality and found.confidence >= LATERALITY_MIN_CONFIDENCE:
                row["eye"] = found.laterality
        return rows
