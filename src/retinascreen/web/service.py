"""Screening a photograph: decode, prepare once, grade, heat map, store photo + row together."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, current_app
from sqlalchemy.orm import Session

from retinascreen.data.folders import EYES
from retinascreen.data.photo import FundusPhoto
from retinascreen.errors import ImageError, ModelError, RetinascreenError
from retinascreen.result import GradingService, Prediction, calibration_note
from retinascreen.serving.step import screen_photo
from retinascreen.web.disconnect import stop_if_client_gone
from retinascreen.web.inputs import clean_patient_id
from retinascreen.web.models import Screening, User
from retinascreen.web.security import audit
from retinascreen.web.segmentation import Overlays, draw_overlays, segmenters, with_macula
from retinascreen.web.storage import PhotoStore, new_name, photo_bytes, png_bytes

# A real photograph shipped with the app (the upload page offers it): the warm-up screens it.
SAMPLE_PHOTO = Path(__file__).resolve().parent / "static" / "sample-retina.jpg"

log = logging.getLogger(__name__)
_predictor_lock = threading.Lock()


def get_predictor(app: Flask | None = None) -> GradingService:
    """The app's predictor, loaded on first use (once per process) from ``config["MODEL"]``."""
    app = app or current_app
    predictor: GradingService | None = app.extensions.get("retinascreen.predictor")
    if predictor is None:
        with _predictor_lock:
            predictor = app.extensions.get("retinascreen.predictor")
            if predictor is None:
                from retinascreen.serving.predictor import Predictor

                threads = app.config.get("MODEL_THREADS")
                predictor = Predictor(app.config.get("MODEL"), threads=threads)
                app.extensions["retinascreen.predictor"] = predictor
    return predictor


def warm_up(app: Flask) -> None:
    """Load the model, the heat-map model and their compiled graphs before the first request.

    Without it the first upload to each worker pays for importing TensorFlow and tracing the
    heat-map graph (seconds), which showed as a 10 s p99 in the load test.
    """
    from retinascreen.data.images import load_image

    predictor = get_predictor(app)
    photo = FundusPhoto(load_image(SAMPLE_PHOTO))
    prepared = predictor.prepare(photo)
    predictor.predict_prepared(prepared)
    with contextlib.suppress(ModelError):  # an ONNX model without its Keras sibling
        predictor.heatmap(prepared)
    with app.app_context():  # the vessel and lesion models too (absent ones are skipped)
        draw_overlays(photo, gradable=True)


def model_is_synthetic(predictor: GradingService) -> bool:
    """Whether the predictor's model was trained on synthetic images (its model card says so)."""
    return predictor.model_info.synthetic


CARD_FIELDS = (
    "backbone",
    "head",
    "input_size",
    "objective",
    "training_data",
    "intended_use",
    "synthetic",
    "created",
)
METRIC_FIELDS = ("qwk", "accuracy", "macro_f1")


def card_summary(predictor: GradingService) -> dict[str, Any] | None:
    """The parts of the model card a report shows, frozen with the screening."""
    card = predictor.card
    if card is None:
        return None
    data = card.to_dict()
    summary = {k: data[k] for k in CARD_FIELDS if data.get(k) not in (None, "")}
    metrics = card.metrics
    kept = {k: metrics[k] for k in METRIC_FIELDS if isinstance(metrics.get(k), int | float)}
    referable = metrics.get("referable")
    auc = referable.get("auc") if isinstance(referable, dict) else None
    if isinstance(auc, int | float):
        kept["referable_auc"] = auc
    if kept:
        summary["metrics"] = kept
    calibration = calibration_note(card.extra.get("site_calibration"))
    if calibration:
        summary["calibration"] = calibration
    return summary


def clean_eye(value: str | None) -> str | None:
    """``left``, ``right`` or None; anything else is a 400 error."""
    value = (value or "").strip().lower()
    if not value:
        return None
    if value not in EYES:
        raise RetinascreenError("Eye must be 'left' or 'right'.")
    return value


def decode_upload(data: bytes, filename: str | None) -> np.ndarray:
    """Decode uploaded bytes to RGB with the product's checks (empty, truncated, pixel limit...)."""
    from retinascreen.data.images import MAX_PIXELS, load_image

    max_pixels = current_app.config.get("MAX_IMAGE_PIXELS") or MAX_PIXELS
    return load_image(data, max_pixels=max_pixels, name=filename or None)


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

    def to_screening(
        self,
        files: dict[str, bytes],
        *,
        user_id: int,
        patient_id: str | None,
        eye: str | None,
    ) -> Screening:
        """The row for this photo; its photo, heat map and overlays are named and added to
        ``files`` (to be staged in the photo store with the row's commit)."""
        photo_name = new_name(self.suffix)
        files[photo_name] = self.kept
        heatmap_name = None
        if self.heatmap is not None:
            heatmap_name = new_name(".png")
            files[heatmap_name] = png_bytes(self.heatmap)
        overlay_names = {what: new_name(".png") for what in self.overlays}
        for what, name in overlay_names.items():
            files[name] = png_bytes(self.overlays[what])
        return Screening.from_prediction(
            self.prediction,
            user_id=user_id,
            patient_id=patient_id,
            eye=eye,
            photo_name=photo_name,
            heatmap_name=heatmap_name,
            model_card=self.card,
            overlay_names=overlay_names,
            segmentation=self.segmentation,
        )


def grade_photo(data: bytes, filename: str | None) -> GradedPhoto:
    """Grade one uploaded photograph; bad input raises a :class:`RetinascreenError`."""
    stop_if_client_gone()  # before each costly step: nobody would read the answer
    rgb = decode_upload(data, filename)
    stop_if_client_gone()
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


def screen_upload(
    db: Session,
    user: User,
    data: bytes,
    *,
    filename: str | None,
    patient_id: str | None,
    eye: str | None,
) -> Screening:
    """Grade an uploaded photograph and store it; bad input raises before anything is written."""
    from retinascreen.web.dicom_upload import header_of, reconcile

    patient_id = clean_patient_id(patient_id)
    eye = clean_eye(eye)
    patient_id, eye, dicom_note = reconcile(header_of(data, filename), patient_id, eye)
    graded = grade_photo(data, filename)
    files: dict[str, bytes] = {}
    screening = graded.to_screening(files, user_id=user.id, patient_id=patient_id, eye=eye)
    if dicom_note:  # what the DICOM header said, and where it disagrees with the form
        screening.result_json = json.dumps({**screening.result, "dicom": dicom_note})
    store: PhotoStore = current_app.extensions["retinascreen.photos"]
    try:
        with store.staged(files):
            db.add(screening)
            db.flush()
            audit(db, "screening", user=user, detail=f"screening {screening.id}")
            db.commit()
    except BaseException:
        db.rollback()
        raise
    return screening


__all__ = [
    "GradedPhoto",
    "ImageError",
    "card_summary",
    "get_predictor",
    "grade_photo",
    "model_is_synthetic",
    "screen_upload",
]
