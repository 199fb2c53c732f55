"""Grade fundus photographs with a trained model: the :class:`Predictor`.

A Predictor loads a ``.keras`` file, an ``.onnx`` file or a training run directory (None = the
bundled demo model) and turns photographs into typed :class:`retinascreen.result.Prediction`
results, whose ``to_dict()`` is the SPEC.md result::

    >>> from retinascreen import Predictor
    >>> p = Predictor("runs/xception")               # or "model.onnx", or None for the demo
    >>> p.predict("eye.png").label
    'Moderate NPDR'

Each image goes file -> :func:`retinascreen.data.images.load_image` -> quality gate
(:func:`retinascreen.data.fundus.assess_quality`) -> the model card's pre-processing -> model.
:meth:`Predictor.prepare` does the first three steps once, so that a photo can be graded
(:meth:`Predictor.predict_prepared`) and explained (:meth:`Predictor.heatmap`) from one pass.
Ungradable photographs still get a result, with ``gradable: false`` and the reasons.
One Predictor per process is enough for a web server: ONNX Runtime sessions are thread-safe and
Keras calls are serialised by a lock. Model files and engines: :mod:`retinascreen.models.engines`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from retinascreen import grading
from retinascreen.data.photo import MIN_SIDE, FundusPhoto, PhotoInput, path_of, to_rgb
from retinascreen.errors import ModelError, RetinascreenError
from retinascreen.result import (
    ImageInput,
    Prediction,
    PredictionError,
    PreparedImage,
    ReferralRule,
)
from retinascreen.serving.task import ModelTask, load_card

if TYPE_CHECKING:
    from retinascreen.data.fundus import Disc, Preprocessing
    from retinascreen.models.modelcard import ModelCard

__all__ = [
    "FUNDUS_LEVEL",
    "MIN_SIDE",
    "ImageInput",
    "Predictor",
    "load_card",
    "output_offset",
    "output_temperature",
    "referral_rule",
    "to_rgb",
]

FUNDUS_LEVEL = 20  # pixels of a cropped photo brighter than this (any channel) are fundus

log = logging.getLogger(__name__)


def _card_number(card: ModelCard, key: str) -> tuple[float, Any] | None:
    """``(value as a float, NaN if it is not a number; the value as written)`` of the card's
    ``extra[key]``; None when the card has none."""
    if card.extra.get(key) is None:
        return None
    value = card.extra[key]
    try:
        return float(value), value
    except (TypeError, ValueError):
        return float("nan"), value


def output_temperature(card: ModelCard | None) -> float:
    """The temperature a recalibrated model's card asks for (1.0: the model's own output).

    Set by ``retinascreen calibrate`` (:mod:`retinascreen.serving.calibration`).
    """
    found = None if card is None else _card_number(card, "output_temperature")
    if card is None or found is None:
        return 1.0
    temperature, value = found
    if not np.isfinite(temperature) or temperature <= 0:
        raise ModelError(f"model card {card.name!r}: output_temperature must be > 0, got {value!r}")
    return temperature


def output_offset(card: ModelCard | None) -> float:
    """The shift of an ordinal model's cumulative logits a recalibrated card asks for (0.0:
    none); set by ``retinascreen calibrate`` with the temperature."""
    found = None if card is None else _card_number(card, "output_offset")
    if card is None or found is None:
        return 0.0
    offset, value = found
    if not np.isfinite(offset) or (offset != 0.0 and card.objective != "ordinal"):
        raise ModelError(
            f"model card {card.name!r}: output_offset must be a finite number on an ordinal "
            f"model, got {value!r}"
        )
    return offset


def referral_rule(card: ModelCard | None) -> ReferralRule | None:
    """The card's referral threshold and the sensitivity it was chosen for (None: no threshold).

    The sensitivity comes from the site calibration or the card's metrics, and only when they
    name the same threshold as ``referable_threshold``.
    """
    threshold = card.extra.get("referable_threshold") if card is not None else None
    if card is None or threshold is None:
        return None
    threshold = float(threshold)
    sources = (card.extra.get("site_calibration"), card.metrics.get("referable"))
    for source in sources:
        if not isinstance(source, dict) or source.get("target_sensitivity") is None:
            continue
        if abs(float(source.get("threshold", float("nan"))) - threshold) < 1e-9:
            return ReferralRule(threshold, float(source["target_sensitivity"]))
    return ReferralRule(threshold)


class Predictor(ModelTask):
    """Grades photographs with one model; see the module docstring.

    ``model``: a ``.keras`` / ``.onnx`` path, a training run directory or None (the demo model).
    ``engine``: ``auto`` (ONNX when the path or run directory has one), ``keras`` or ``onnx``.
    ``threads``: intra-op threads for the model (None = all cores).
    """

    task = "grading"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        engine: str = "auto",
        threads: int | None = None,
    ) -> None:
        from retinascreen.models.engines import KerasEngine, resolve_model_path

        super().__init__(resolve_model_path(model, engine), threads=threads)
        card = self.card
        self.input_size: int = int(self._engine.input_size or (card.input_size if card else 299))
        self.preprocessing: Preprocessing = self.preprocessing_at(self.input_size)
        self._keras_for_cam: Any | None = (
            self._engine.model if isinstance(self._engine, KerasEngine) else None
        )
        self._cam_lock = threading.Lock()
        # How probabilities become a grade and a referral, as the model card says.
        self.grade_rule: str = grading.grade_rule(card.objective if card else None)
        self.referral_rule: ReferralRule | None = referral_rule(card)
        self.referable_threshold: float | None = (
            None if self.referral_rule is None else self.referral_rule.threshold
        )
        # Temperature (and ordinal offset) fitted by site recalibration, applied to every
        # engine's output.
        self.output_temperature: float = output_temperature(card)
        self.output_offset: float = output_offset(card)

    # -- public API -------------------------------------------------------------------------
    @overload
    def predict(self, image: list[PhotoInput] | tuple[PhotoInput, ...]) -> list[Prediction]: ...

    @overload
    def predict(self, image: PhotoInput) -> Prediction: ...

    def predict(
        self, image: PhotoInput | list[PhotoInput] | tuple[PhotoInput, ...]
    ) -> Prediction | list[Prediction]:
        """The result for one image (path, bytes or RGB array); a list for a list or a batch.

        A 4-D array (N, H, W, 3) is a batch too (typed as one result: prefer predict_batch).
        """
        if isinstance(image, list | tuple) or (isinstance(image, np.ndarray) and image.ndim == 4):
            return self.predict_batch(list(image))
        return self.predict_prepared(self.prepare(image))

    @overload
    def predict_batch(
        self,
        images: Iterable[PhotoInput],
        *,
        batch_size: int = 16,
        errors: Literal["raise"] = "raise",
    ) -> list[Prediction]: ...

    @overload
    def predict_batch(
        self, images: Iterable[PhotoInput], *, batch_size: int = 16, errors: Literal["include"]
    ) -> list[Prediction | PredictionError]: ...

    def predict_batch(
        self, images: Iterable[PhotoInput], *, batch_size: int = 16, errors: str = "raise"
    ) -> list[Prediction] | list[Prediction | PredictionError]:
        """Results for many images, calling the model ``batch_size`` images at a time.

        ``errors="raise"`` raises the first bad input's typed error; ``errors="include"`` puts a
        :class:`PredictionError` (``to_dict()``: ``{"error", "error_type"}``) in that image's
        place and goes on.
        """
        if errors not in ("raise", "include"):
            raise ValueError("errors must be 'raise' or 'include'")
        items = list(images)
        results: list[Prediction | PredictionError | None] = [None] * len(items)
        for start in range(0, len(items), max(1, batch_size)):
            chunk = range(start, min(start + batch_size, len(items)))
            ready: list[tuple[int, PreparedImage]] = []
            for i in chunk:
                try:
                    ready.append((i, self.prepare(items[i])))
                except RetinascreenError as exc:
                    if errors == "raise":
                        raise
                    results[i] = PredictionError.from_exception(exc, path_of(items[i]))
            if not ready:
                continue
            probs = self.predict_arrays(np.stack([p.pixels for _, p in ready]))
            for (i, prepared), p in zip(ready, probs, strict=True):
                results[i] = self._prediction(p, prepared)
        return [r for r in results if r is not None]

    def prepare(self, image: PhotoInput) -> PreparedImage:
        """Read, quality-check and pre-process one image, once (for predict and heat map).

        ``image`` may be a :class:`~retinascreen.data.photo.FundusPhoto`: its field, verdict and
        crops are then shared with whatever else uses that photo (the vessel and lesion maps).
        """
        photo = FundusPhoto.read(image)
        pixels = photo.crop(self.preprocessing)
        view = photo.view(self.preprocessing.size) if self.preprocessing.enhances else None
        return PreparedImage(pixels, photo.quality, photo.path, view, photo)

    def predict_prepared(self, prepared: PreparedImage) -> Prediction:
        """The result for an image already :meth:`prepare`-d."""
        probs = self.predict_arrays(prepared.pixels[None])
        return self._prediction(probs[0], prepared)

    def preprocess(self, rgb: np.ndarray, *, disc: Disc | None = None) -> np.ndarray:
        """The model card's pre-processing: the (S, S, 3) uint8 picture the model sees.

        ``rgb`` must be an RGB array (H, W, 3) of at least 8 x 8 pixels (see :func:`to_rgb`);
        a photo without a fundus disc is padded whole to a square, never refused. ``disc``:
        the field of view already found (:func:`retinascreen.data.fundus.find_disc`).
        """
        return np.asarray(self.preprocessing.apply(rgb, disc=disc))

    def predict_arrays(self, batch: np.ndarray, *, calibrated: bool = True) -> np.ndarray:
        """Probabilities (N, 5) for pre-processed pixels (N, S, S, 3) 0..255.

        ``calibrated=False``: the model's own output, without the card's ``output_temperature``
        and ``output_offset``.
        """
        batch = np.asarray(batch, dtype=np.float32)
        probs = self._engine(batch)
        if probs.ndim != 2 or probs.shape[1] != grading.N_CLASSES:
            raise ModelError(
                f"{self.model_path.name}: model outputs shape {probs.shape}, "
                f"expected (N, {grading.N_CLASSES}) grade probabilities"
            )
        if not calibrated or (self.output_temperature == 1.0 and self.output_offset == 0.0):
            return probs
        from retinascreen.models.calibration import scale_probabilities

        objective = self.card.objective if self.card is not None else "softmax"
        scaled = scale_probabilities(probs, self.output_temperature, objective, self.output_offset)
        return scaled.astype(np.float32)

    def heatmap(
        self,
        image: PhotoInput | PreparedImage,
        class_index: int | None = None,
        alpha: float = 0.4,
    ) -> np.ndarray:
        """Grad-CAM overlay (S, S, 3) RGB uint8 on the cropped photo (unenhanced).

        ``image`` may be a :class:`PreparedImage` (from :meth:`prepare`: no second pass).
        Without ``class_index`` it shows the evidence for referable DR (grades 2-4); with it, the
        evidence for that grade. The heat is scaled by that probability, so a photo the model
        finds healthy stays cool, and cleared outside the fundus disc (no findings there).
        """
        from retinascreen.serving.explain import explain, overlay

        model = self._cam_model()
        prepared = image if isinstance(image, PreparedImage) else self.prepare(image)
        x, view = prepared.pixels, prepared.view
        target = "referable" if class_index is None else "grade"
        with self._cam_lock:
            cam, strength = explain(model, x[None].astype(np.float32), class_index, target=target)
        # Shown over the photo as a person sees it (not the enhanced input), cleared outside
        # the fundus. sqrt spreads the peaky map so that every lesion with evidence shows, not
        # only the top one; scaling by the explained probability keeps a healthy photo cool.
        base = x if view is None else view
        cam = np.sqrt(cam) * strength * (base.max(axis=2) > FUNDUS_LEVEL)
        return overlay(base, cam, alpha=alpha)

    # -- internals ----------------------------------------------------------------------------
    def _cam_model(self) -> Any:
        if self._keras_for_cam is None:
            from retinascreen.models.engines import KerasEngine, keras_sibling

            sibling = keras_sibling(self.model_path)
            if sibling is None:
                raise ModelError(
                    f"{self.model_path.name}: heat maps need the Keras model; "
                    "put the .keras file beside the .onnx file"
                )
            self._keras_for_cam = KerasEngine(sibling, self.threads).model
        return self._keras_for_cam

    def _prediction(self, probs: np.ndarray, prepared: PreparedImage) -> Prediction:
        p = tuple(float(v) for v in probs)
        grade = int(grading.predicted_grades(probs, self.grade_rule)[0])
        referable = grading.is_referable(grade)
        if self.referable_threshold is not None:
            # The operating point chosen on validation (e.g. for 90 % sensitivity).
            referable = grading.referable_probability(p) >= self.referable_threshold
        return Prediction(
            grade=grade,
            label=grading.label(grade),
            probabilities=p,
            referable=bool(referable),
            referable_probability=grading.referable_probability(p),
            quality=prepared.quality.rounded(),
            model=self.model_info,
            path=prepared.path,
            referral_rule=self.referral_rule,
        )
