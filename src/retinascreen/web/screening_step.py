"""The one place a visit's photo is graded: an adapter over the single-photo upload's steps.

:func:`grade_photo` does what :func:`retinascreen.web.service.screen_upload` does before it
stores anything (decode with the product's checks, prepare once, refuse a non-fundus, grade,
heat map, overlays) and hands the pieces back, so a visit can store all its photos in one
transaction. When the screening step is replaced (issue 22), only this function changes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from retinascreen.data.fundus import REASON_NO_DISC
from retinascreen.errors import ModelError, NotFundusError
from retinascreen.result import Prediction
from retinascreen.web.disconnect import stop_if_client_gone
from retinascreen.web.segmentation import draw_overlays
from retinascreen.web.service import card_summary, decode_upload, get_predictor
from retinascreen.web.storage import photo_bytes

log = logging.getLogger(__name__)


@dataclass
class GradedPhoto:
    """A graded upload, nothing stored yet."""

    prediction: Prediction
    kept: bytes
    """The bytes to keep (the upload itself, or PNG for formats a browser cannot show)."""
    suffix: str
    heatmap: np.ndarray | None
    overlays: dict[str, np.ndarray]
    segmentation: dict[str, Any]
    card: dict[str, Any] | None


def grade_photo(data: bytes, filename: str | None) -> GradedPhoto:
    """Grade one uploaded photograph; bad input raises a :class:`RetinascreenError`."""
    stop_if_client_gone()
    rgb = decode_upload(data, filename)
    predictor = get_predictor()
    prepared = predictor.prepare(rgb)
    if REASON_NO_DISC in prepared.quality.reasons:
        raise NotFundusError(
            "This does not look like a fundus photograph (no round retina on a dark background "
            "was found). Upload a colour photograph of the retina."
        )
    prediction = predictor.predict_prepared(prepared)
    stop_if_client_gone()
    heatmap = None
    if prediction.gradable:
        try:
            heatmap = predictor.heatmap(prepared)
        except ModelError as exc:
            log.warning("no heat map: %s", exc)
    overlays = draw_overlays(rgb, gradable=prediction.gradable)
    kept, suffix = photo_bytes(data, rgb)
    return GradedPhoto(
        prediction=prediction,
        kept=kept,
        suffix=suffix,
        heatmap=heatmap,
        overlays=dict(overlays.images),
        segmentation=dict(overlays.summary or {}),
        card=card_summary(predictor),
    )
