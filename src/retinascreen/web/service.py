"""Screening a photograph: decode, predict, heat map, store photo + row together."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Any

import numpy as np
from flask import Flask, current_app
from sqlalchemy.orm import Session

from retinascreen.errors import ImageError, ModelError, NotFundusError, RetinascreenError
from retinascreen.fundus import REASON_NO_DISC
from retinascreen.web.models import Screening, User
from retinascreen.web.security import audit
from retinascreen.web.storage import PhotoStore, new_name, photo_bytes, png_bytes

SYNTHETIC_WARNING = "Demo model trained on synthetic images — not for clinical use"
EYES = ("left", "right")
PATIENT_ID_MAX = 64

log = logging.getLogger(__name__)
_predictor_lock = threading.Lock()


def get_predictor(app: Flask | None = None) -> Any:
    """The app's predictor, loaded on first use (once per process) from ``config["MODEL"]``."""
    app = app or current_app
    predictor = app.extensions.get("retinascreen.predictor")
    if predictor is None:
        with _predictor_lock:
            predictor = app.extensions.get("retinascreen.predictor")
            if predictor is None:
                from retinascreen.inference import Predictor

                threads = app.config.get("MODEL_THREADS")
                predictor = Predictor(app.config.get("MODEL"), threads=threads)
                app.extensions["retinascreen.predictor"] = predictor
    return predictor


def warm_up(app: Flask) -> None:
    """Load the model, the heat-map model and their compiled graphs before the first request.

    Without it the first upload to each worker pays for importing TensorFlow and tracing the
    heat-map graph (seconds), which showed as a 10 s p99 in the load test.
    """
    from retinascreen.errors import ModelError
    from retinascreen.synthetic import generate

    predictor = get_predictor(app)
    photo = generate(0, 0, size=256).image
    predictor.predict(photo)
    with contextlib.suppress(ModelError):  # an ONNX model without its Keras sibling
        predictor.heatmap(photo)


def model_is_synthetic(predictor: Any) -> bool:
    """Whether the predictor's model was trained on synthetic images (its model card says so)."""
    if getattr(predictor, "synthetic", None) is not None:
        return bool(predictor.synthetic)
    card = getattr(predictor, "card", None)
    if isinstance(card, dict):
        return bool(card.get("synthetic"))
    return bool(getattr(card, "synthetic", False))


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


def card_summary(predictor: Any) -> dict[str, Any] | None:
    """The parts of the model card a report shows, frozen with the screening."""
    card = getattr(predictor, "card", None)
    if card is None:
        return None
    data = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    summary = {k: data[k] for k in CARD_FIELDS if data.get(k) not in (None, "")}
    metrics = data.get("metrics") or {}
    kept = {k: metrics[k] for k in METRIC_FIELDS if isinstance(metrics.get(k), int | float)}
    auc = (
        (metrics.get("referable") or {}).get("auc")
        if isinstance(metrics.get("referable"), dict)
        else None
    )
    if isinstance(auc, int | float):
        kept["referable_auc"] = auc
    if kept:
        summary["metrics"] = kept
    return summary


def clean_patient_id(value: str | None) -> str | None:
    """Trimmed patient id or None; raises a 400 error when too long or with control characters."""
    value = (value or "").strip()
    if not value:
        return None
    if len(value) > PATIENT_ID_MAX or not value.isprintable():
        raise RetinascreenError(
            f"Patient id must be at most {PATIENT_ID_MAX} printable characters."
        )
    return value


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
    from retinascreen.images import MAX_PIXELS, load_image

    max_pixels = current_app.config.get("MAX_IMAGE_PIXELS") or MAX_PIXELS
    return load_image(data, max_pixels=max_pixels, name=filename or None)


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
    patient_id = clean_patient_id(patient_id)
    eye = clean_eye(eye)
    rgb = decode_upload(data, filename)
    predictor = get_predictor()
    result = dict(predictor.predict(rgb))
    quality = result.get("quality") or {}
    if REASON_NO_DISC in (quality.get("reasons") or []):
        raise NotFundusError(
            "This does not look like a fundus photograph (no round retina on a dark background "
            "was found). Upload a colour photograph of the retina."
        )
    heatmap = None
    if result.get("gradable", True):
        try:
            heatmap = predictor.heatmap(rgb)
        except ModelError as exc:  # e.g. an .onnx model without its .keras beside it
            log.warning("no heat map: %s", exc)
    synthetic = bool(result.get("synthetic")) or model_is_synthetic(predictor)
    card = card_summary(predictor)
    if card:
        result["model_card"] = card
    if synthetic:
        result["synthetic"] = True
        result.setdefault("warning", SYNTHETIC_WARNING)

    kept, suffix = photo_bytes(data, rgb)
    files = {new_name(suffix): kept}
    heatmap_name = None
    if heatmap is not None:
        heatmap_name = new_name(".png")
        files[heatmap_name] = png_bytes(heatmap)
    photo_name = next(iter(files))
    model = result.get("model") or {}
    screening = Screening(
        user_id=user.id,
        patient_id=patient_id,
        eye=eye,
        grade=int(result["grade"]),
        referable=bool(result["referable"]),
        referable_probability=float(result["referable_probability"]),
        gradable=bool(result.get("gradable", True)),
        synthetic=synthetic,
        result_json=json.dumps(result),
        photo_name=photo_name,
        heatmap_name=heatmap_name,
        model_name=str(model.get("name", "unknown"))[:128],
        model_version=str(model.get("version", "unknown"))[:64],
        model_sha256=str(model.get("sha256", ""))[:64],
    )
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
    "SYNTHETIC_WARNING",
    "ImageError",
    "get_predictor",
    "model_is_synthetic",
    "screen_upload",
]
