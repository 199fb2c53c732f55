"""The one place a visit's photo is graded: an adapter over the single-photo upload's steps.

:func:`grade_photo` does what :func:`retinascreen.web.service.screen_upload` does before it
stores anything (decode with the product's checks, prepare once, refuse a non-fundus, grade,
heat map, overlays: the one screening step, ``serving.step.screen_photo``) and hands the pieces
back, so a visit can store all its photos in one transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from retinascreen.data.photo import FundusPhoto
from retinascreen.result import Prediction
from retinascreen.serving.step import screen_photo
from retinascreen.web.disconnect import stop_if_client_gone
from retinascreen.web.segmentation import Overlays, segmenters, with_macula
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
    screened = screen_photo(  # the one screening step: not-a-fundus refused there
        FundusPhoto(rgb),
        predictor,
        heatmap=True,
        segmenters=segmenters(),
        between=stop_if_client_gone,
    )
    prediction, heatmap = screened.prediction, screened.heatmap
    overlays = Overlays(screened.overlays, screened.summary)
    prediction, overlays = with_macula(screened, overlays)
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
