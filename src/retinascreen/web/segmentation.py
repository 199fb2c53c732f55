"""Vessel and lesion overlays of an uploaded photograph, stored beside the heat map.

Config keys: ``SEGMENTATION`` (default True: draw them when the models are available),
``VESSEL_MODEL`` and ``LESION_MODEL`` (a segmentation ``.keras`` / ``.onnx`` file; None = the
bundled model), ``LESION_FLIP_AVERAGE`` (default True: as the lesion model's card says; False:
one pass, faster). Segmenters are loaded once per process; a model that cannot be loaded and a
photo that cannot be segmented are logged and leave the overlay absent: segmentation never
fails an upload.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from flask import Flask, current_app

if TYPE_CHECKING:
    from retinascreen.data.photo import FundusPhoto, PhotoInput
    from retinascreen.result import Prediction
    from retinascreen.serving.segmenter import Segmenter
    from retinascreen.serving.step import Screened

log = logging.getLogger(__name__)
CONFIG_KEYS = {"vessels": "VESSEL_MODEL", "lesions": "LESION_MODEL"}
SYNTHETIC_LESIONS = "Lesion maps were learned from synthetic photos only"

_lock = threading.Lock()
_loaded: dict[tuple[str, str | None, bool], Segmenter | None] = {}


def get_segmenter(what: str, app: Flask | None = None) -> Segmenter | None:
    """The app's ``vessels`` or ``lesions`` segmenter, or None when off or unavailable."""
    app = app or current_app
    if not app.config.get("SEGMENTATION", True):
        return None
    model = app.config.get(CONFIG_KEYS[what])
    flip = what != "lesions" or bool(app.config.get("LESION_FLIP_AVERAGE", True))
    key = (what, None if model is None else str(model), flip)
    with _lock:
        if key not in _loaded:
            _loaded[key] = _load(what, model, app.config.get("MODEL_THREADS"), flip)
        return _loaded[key]


def _load(what: str, model: Any, threads: int | None, flip_average: bool) -> Segmenter | None:
    from retinascreen.serving.segmenter import Segmenter

    try:
        return Segmenter(model, what, threads=threads, flip_average=flip_average)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the overlay out, never the upload
        log.warning("no %s overlays: %s", what, exc)
        return None


@dataclass
class Overlays:
    """PNG-ready overlays (``vessels``, ``lesions``) and what the result page says about them."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    # The disc/fovea/maculopathy verdict (serving.maculopathy.MaculaResult) of a gradable photo.
    macula: Any = None


def segmenters(app: Flask | None = None) -> dict[str, Segmenter | None]:
    """The app's segmenters by overlay name (None where off or unavailable)."""
    return {what: get_segmenter(what, app) for what in CONFIG_KEYS}


def draw_overlays(photo: PhotoInput, *, gradable: bool) -> Overlays:
    """Vessel overlay of every photo, lesion overlay of gradable ones; never raises.

    ``summary``: ``vessel_density`` (share of the field), ``lesion_areas`` (share of the field
    per lesion type) and ``models`` (name, version, sha256, training_data, synthetic of each).
    The drawing is the screening step's (:func:`retinascreen.serving.step.draw_overlays`).
    """
    from retinascreen.serving.step import draw_overlays as draw

    try:
        found = segmenters()
    except Exception:  # noqa: BLE001 - a segmenter that cannot load leaves its overlay out
        log.exception("segmenters unavailable; the screening is stored without overlays")
        return Overlays()
    return Overlays(*draw(photo, found, gradable=gradable))


def with_macula(screened: Screened, overlays: Overlays) -> tuple[Prediction, Overlays]:
    """The prediction and overlays with disc, fovea and the maculopathy rule (a setting) added
    from the screening's lesion map; maculopathy may make the photo referable. Never raises."""
    lesions = screened.segmentations.get("lesions")
    segmenter = get_segmenter("lesions") if lesions is not None else None
    if lesions is None or segmenter is None:
        return screened.prediction, overlays
    _add_macula(overlays, screened.photo, lesions, segmenter, screened.prediction.grade)
    if overlays.macula is None:
        return screened.prediction, overlays
    from retinascreen.serving.maculopathy import apply_to

    return apply_to(screened.prediction, overlays.macula), overlays


def _add_macula(
    result: Overlays, photo: FundusPhoto, segmentation: Any, lesions: Any, grade: int
) -> None:
    """Disc, fovea and maculopathy from the lesion map and the ``grade`` the photo was given;
    drawn on the map; never raises."""
    from retinascreen.web.anatomy import get_macula_check

    try:
        check = get_macula_check(lesions)
        if check is None:
            return
        macula = check.check(photo, segmentation=segmentation, grade=grade)
    except Exception:  # noqa: BLE001 - log it and leave the anatomy out
        log.exception("disc/fovea finding failed; the screening is stored without it")
        return
    result.macula = macula
    result.images["lesions"] = macula.draw_on(result.images["lesions"])
    result.summary["macula"] = macula.to_dict()
    result.summary.setdefault("models", {})["disc"] = check.finder.model_info


def lesion_note(summary: dict[str, Any]) -> str | None:
    """What the lesion model learned from, in words, from its card (None without one)."""
    model = (summary.get("models") or {}).get("lesions")
    if not isinstance(model, dict):
        return None
    source = str(model.get("training_data") or "").strip()
    if model.get("synthetic"):
        return f"{SYNTHETIC_LESIONS}." + (f" Training data: {source}." if source else "")
    note = f"Lesion maps were learned from {source}." if source else None
    aupr = model.get("test_aupr")
    if note and isinstance(aupr, dict) and aupr:
        figures = ", ".join(
            f"{name.replace('_', ' ')} {float(value):.2f}" for name, value in aupr.items()
        )
        note += f" Measured on IDRiD's 27 test photos, area under the precision-recall curve: {figures}."
    return note


def lesion_legend(summary: dict[str, Any]) -> str | None:
    """The lesion overlay's colours in words (None without a lesion map)."""
    from retinascreen.serving.segmenter import legend

    areas = summary.get("lesion_areas")
    return legend(list(areas)) if isinstance(areas, dict) and areas else None
