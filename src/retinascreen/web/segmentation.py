"""Vessel and lesion overlays of an uploaded photograph, stored beside the heat map.

Config keys: ``SEGMENTATION`` (default True: draw them when the models are available),
``VESSEL_MODEL`` and ``LESION_MODEL`` (a segmentation ``.keras`` / ``.onnx`` file; None = the
bundled model). Segmenters are loaded once per process; a model that cannot be loaded and a
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
    from retinascreen.data.photo import PhotoInput
    from retinascreen.serving.segmenter import Segmenter

log = logging.getLogger(__name__)
CONFIG_KEYS = {"vessels": "VESSEL_MODEL", "lesions": "LESION_MODEL"}
SYNTHETIC_LESIONS = "Lesion maps were learned from synthetic photos only"

_lock = threading.Lock()
_loaded: dict[tuple[str, str | None], Segmenter | None] = {}


def get_segmenter(what: str, app: Flask | None = None) -> Segmenter | None:
    """The app's ``vessels`` or ``lesions`` segmenter, or None when off or unavailable."""
    app = app or current_app
    if not app.config.get("SEGMENTATION", True):
        return None
    model = app.config.get(CONFIG_KEYS[what])
    key = (what, None if model is None else str(model))
    with _lock:
        if key not in _loaded:
            _loaded[key] = _load(what, model, app.config.get("MODEL_THREADS"))
        return _loaded[key]


def _load(what: str, model: Any, threads: int | None) -> Segmenter | None:
    from retinascreen.serving.segmenter import Segmenter

    try:
        return Segmenter(model, what, threads=threads)
    except Exception as exc:  # noqa: BLE001 - any failure leaves the overlay out, never the upload
        log.warning("no %s overlays: %s", what, exc)
        return None


@dataclass
class Overlays:
    """PNG-ready overlays (``vessels``, ``lesions``) and what the result page says about them."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


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


def lesion_note(summary: dict[str, Any]) -> str | None:
    """What the lesion model learned from, in words, from its card (None without one)."""
    model = (summary.get("models") or {}).get("lesions")
    if not isinstance(model, dict):
        return None
    source = str(model.get("training_data") or "").strip()
    if model.get("synthetic"):
        return f"{SYNTHETIC_LESIONS}." + (f" Training data: {source}." if source else "")
    return f"Lesion maps were learned from {source}." if source else None


def lesion_legend(summary: dict[str, Any]) -> str | None:
    """The lesion overlay's colours in words (None without a lesion map)."""
    from retinascreen.serving.segmenter import legend

    areas = summary.get("lesion_areas")
    return legend(list(areas)) if isinstance(areas, dict) and areas else None
