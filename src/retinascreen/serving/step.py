"""The one screening step: a photo -> grade, heat map, vessel and lesion overlays.

The web upload, the REST API, ``retinascreen predict`` and ``retinascreen screen`` all screen a
photograph through :func:`screen_photo` (one photo) or :func:`screen_batch` (many), so that the
policy is the same everywhere: a photo that is not a fundus photograph is refused with one
message (:data:`retinascreen.data.photo.NOT_FUNDUS`); an ungradable one is graded and says so;
the heat map and the lesion overlay are drawn for gradable photos only, the vessel overlay for
every photo. The photo is read once (:class:`~retinascreen.data.photo.FundusPhoto`): its field,
quality verdict and crops are shared by the grading model and the segmenters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from retinascreen.data.photo import FundusPhoto, PhotoInput, path_of, refuse_not_fundus
from retinascreen.errors import ModelError, NotFundusError
from retinascreen.result import GradingService, Prediction, PredictionError, PreparedImage

if TYPE_CHECKING:
    from retinascreen.serving.segmenter import Segmentation, Segmenter

__all__ = ["Screened", "draw_overlays", "screen_batch", "screen_photo"]

log = logging.getLogger(__name__)

# Overlays drawn only on gradable photos (lesions on an unreadable photo would be noise).
GRADABLE_ONLY = frozenset({"lesions"})


@dataclass
class Screened:
    """One screened photo: its result, heat map and overlays (absent ones left out)."""

    photo: FundusPhoto
    prepared: PreparedImage
    prediction: Prediction
    heatmap: np.ndarray | None = None
    overlays: dict[str, np.ndarray] = field(default_factory=dict)
    # ``vessel_density``, ``lesion_areas`` and ``models`` (the card facts of each segmenter).
    summary: dict[str, Any] = field(default_factory=dict)
    # The maps themselves, by segmenter name (for what is read off them, e.g. maculopathy).
    segmentations: dict[str, Segmentation] = field(default_factory=dict)


def screen_photo(
    image: PhotoInput,
    predictor: GradingService,
    *,
    heatmap: bool = False,
    segmenters: Mapping[str, Segmenter | None] | None = None,
    between: Callable[[], None] | None = None,
) -> Screened:
    """Screen one photo; :class:`NotFundusError` when it is not a fundus photograph.

    ``heatmap``: draw the Grad-CAM overlay (gradable photos; a model without a heat-map twin
    is logged, never an error). ``segmenters``: ``{"vessels": ..., "lesions": ...}`` (None
    values skipped); their overlays never fail the step. ``between``: called before each
    costly step (the web app stops there when the client has gone).
    """
    photo = FundusPhoto.read(image)
    prepared = predictor.prepare(photo)
    refuse_not_fundus(prepared.quality, photo.path)
    prediction = predictor.predict_prepared(prepared)
    result = Screened(photo, prepared, prediction)
    if between is not None:
        between()
    if heatmap and prediction.gradable:
        try:
            result.heatmap = predictor.heatmap(prepared)
        except ModelError as exc:  # e.g. an .onnx model without its .keras beside it
            log.warning("no heat map: %s", exc)
    if segmenters:
        result.overlays, result.summary = draw_overlays(
            photo, segmenters, gradable=prediction.gradable, keep=result.segmentations
        )
    return result


def draw_overlays(
    photo: PhotoInput,
    segmenters: Mapping[str, Segmenter | None],
    *,
    gradable: bool,
    keep: dict[str, Segmentation] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Each segmenter's overlay of ``photo`` and the summary of them; never raises.

    ``keep``: filled with the segmentations themselves, by name.

    ``summary``: ``vessel_density`` (share of the field), ``lesion_areas`` (share of the field
    per lesion type) and ``models`` (name, version, sha256, training_data, synthetic of each).
    """
    images: dict[str, np.ndarray] = {}
    summary: dict[str, Any] = {}
    photo = FundusPhoto.read(photo)
    for what, segmenter in segmenters.items():
        if segmenter is None or (what in GRADABLE_ONLY and not gradable):
            continue
        try:
            segmentation: Segmentation = segmenter.segment(photo)
            images[what] = segmentation.overlay()
        except Exception:  # noqa: BLE001 - log it and leave this overlay out
            log.exception("segmentation (%s) failed; the screening goes on without it", what)
            continue
        if keep is not None:
            keep[what] = segmentation
        summary.setdefault("models", {})[what] = dict(segmentation.model)
        if what == "vessels":
            density = segmentation.vessel_density()
            if density is not None:
                summary["vessel_density"] = round(density, 4)
        else:
            areas = segmentation.areas()
            summary["lesion_areas"] = {k: round(v, 5) for k, v in areas.items()}
    return images, summary


def screen_batch(
    predictor: Any, images: Iterable[PhotoInput], *, batch_size: int = 16
) -> list[Prediction | PredictionError]:
    """Results for many photos (a :class:`PredictionError` for each bad one, not-a-fundus
    included), the model called ``batch_size`` photos at a time."""
    items = list(images)
    results: list[Prediction | PredictionError] = predictor.predict_batch(
        items, batch_size=batch_size, errors="include"
    )
    return [_refused(result, item) for result, item in zip(results, items, strict=True)]


def _refused(
    result: Prediction | PredictionError, item: PhotoInput
) -> Prediction | PredictionError:
    if isinstance(result, PredictionError):
        return result
    try:
        refuse_not_fundus(result.quality, path_of(item))
    except NotFundusError as exc:
        return PredictionError.from_exception(exc, result.path)
    return result
