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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np

from retinascreen import grading
from retinascreen.errors import ConfigError, ModelError, RetinascreenError
from retinascreen.result import (
    ImageInput,
    ModelInfo,
    Prediction,
    PredictionError,
    PreparedImage,
    Quality,
    ReferralRule,
)

if TYPE_CHECKING:
    from retinascreen.data.fundus import Disc, Preprocessing
    from retinascreen.models.engines import Engine
    from retinascreen.models.modelcard import ModelCard

__all__ = [
    "FUNDUS_LEVEL",
    "ImageInput",
    "Predictor",
    "load_card",
    "output_temperature",
    "referral_rule",
    "to_rgb",
]

FUNDUS_LEVEL = 20  # pixels of a cropped photo brighter than this (any channel) are fundus

log = logging.getLogger(__name__)


def load_card(path: Path) -> ModelCard | None:
    """The model card stored in a model file; None (said in a log line) when it has none.

    A card that is present but unreadable or invalid is a :class:`ModelError` naming the file.
    """
    from retinascreen.models.modelcard import find_card

    card = find_card(path)
    if card is None:
        log.info(
            "%s has no model card: using defaults (name %r, version 'unversioned', "
            "plain fundus crop, not marked synthetic)",
            path,
            path.stem,
        )
    return card


def output_temperature(card: ModelCard | None) -> float:
    """The temperature a recalibrated model's card asks for (1.0: the model's own output).

    Set by ``retinascreen calibrate`` (:mod:`retinascreen.serving.calibration`).
    """
    if card is None or card.extra.get("output_temperature") is None:
        return 1.0
    value = card.extra["output_temperature"]
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        temperature = float("nan")
    if not np.isfinite(temperature) or temperature <= 0:
        raise ModelError(f"model card {card.name!r}: output_temperature must be > 0, got {value!r}")
    return temperature


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


class Predictor:
    """Grades photographs with one model; see the module docstring.

    ``model``: a ``.keras`` / ``.onnx`` path, a training run directory or None (the demo model).
    ``engine``: ``auto`` (ONNX when the path or run directory has one), ``keras`` or ``onnx``.
    ``threads``: intra-op threads for the model (None = all cores).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        engine: str = "auto",
        threads: int | None = None,
    ) -> None:
        from retinascreen.models.engines import KerasEngine, load_engine, resolve_model_path
        from retinascreen.models.modelcard import file_sha256, preprocessing_for

        self.model_path: Path = resolve_model_path(model, engine)
        self.threads = threads
        self._engine: Engine = load_engine(self.model_path, threads)
        self.engine: str = self._engine.kind
        self.card: ModelCard | None = load_card(self.model_path)
        card = self.card
        if card is not None and card.task != "grading":
            raise ModelError(
                f"{self.model_path.name} is a {card.task} model, not a grading model: use "
                "`retinascreen segment` or retinascreen.Segmenter for it"
            )
        self.input_size: int = int(self._engine.input_size or (card.input_size if card else 299))
        try:
            self.preprocessing: Preprocessing = preprocessing_for(card, self.input_size)
        except (ModelError, ConfigError) as exc:
            raise ModelError(f"{self.model_path}: {exc}") from exc
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
        # Temperature fitted by site recalibration, applied to every engine's output.
        self.output_temperature: float = output_temperature(card)
        self.model_info: ModelInfo = ModelInfo.from_card(
            card, self.model_path.stem, file_sha256(self.model_path)
        )

    def __repr__(self) -> str:
        return f"Predictor({str(self.model_path)!r}, engine={self.engine!r})"

    @property
    def synthetic(self) -> bool:
        """Whether the model card says the model was trained on synthetic images only."""
        return self.model_info.synthetic

    # -- public API -------------------------------------------------------------------------
    @overload
    def predict(self, image: list[ImageInput] | tuple[ImageInput, ...]) -> list[Prediction]: ...

    @overload
    def predict(self, image: ImageInput) -> Prediction: ...

    def predict(
        self, image: ImageInput | list[ImageInput] | tuple[ImageInput, ...]
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
        images: Iterable[ImageInput],
        *,
        batch_size: int = 16,
        errors: Literal["raise"] = "raise",
    ) -> list[Prediction]: ...

    @overload
    def predict_batch(
        self, images: Iterable[ImageInput], *, batch_size: int = 16, errors: Literal["include"]
    ) -> list[Prediction | PredictionError]: ...

    def predict_batch(
        self, images: Iterable[ImageInput], *, batch_size: int = 16, errors: str = "raise"
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
                    results[i] = PredictionError.from_exception(exc, _path_of(items[i]))
            if not ready:
                continue
            probs = self.predict_arrays(np.stack([p.pixels for _, p in ready]))
            for (i, prepared), p in zip(ready, probs, strict=True):
                results[i] = self._prediction(p, prepared)
        return [r for r in results if r is not None]

    def prepare(self, image: ImageInput) -> PreparedImage:
        """Read, quality-check and pre-process one image, once (for predict and heat map)."""
        from retinascreen.data.fundus import assess_quality, find_disc

        rgb = to_rgb(image)
        disc = find_disc(rgb)  # once, for the verdict, the model's crop and the plain view
        quality: Quality = assess_quality(rgb, disc=disc)
        pixels = self.preprocess(rgb, disc=disc)
        return PreparedImage(pixels, quality, _path_of(image), self._view(rgb, disc))

    def _view(self, rgb: np.ndarray, disc: Disc | None) -> np.ndarray | None:
        """The plain crop a person sees, when the model's own input is enhanced."""
        settings = self.preprocessing
        if not settings.enhances:
            return None
        from retinascreen.data.fundus import crop_fundus

        return crop_fundus(rgb, settings.size, disc=disc)

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

        ``calibrated=False``: the model's own output, without the card's ``output_temperature``.
        """
        batch = np.asarray(batch, dtype=np.float32)
        probs = self._engine(batch)
        if probs.ndim != 2 or probs.shape[1] != grading.N_CLASSES:
            raise ModelError(
                f"{self.model_path.name}: model outputs shape {probs.shape}, "
                f"expected (N, {grading.N_CLASSES}) grade probabilities"
            )
        if not calibrated or self.output_temperature == 1.0:
            return probs
        from retinascreen.models.calibration import scale_probabilities

        objective = self.card.objective if self.card is not None else "softmax"
        return scale_probabilities(probs, self.output_temperature, objective).astype(np.float32)

    def heatmap(
        self,
        image: ImageInput | PreparedImage,
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
        if isinstance(image, PreparedImage):
            x, view = image.pixels, image.view
        else:
            from retinascreen.data.fundus import find_disc

            rgb = to_rgb(image)
            disc = find_disc(rgb)
            x, view = self.preprocess(rgb, disc=disc), self._view(rgb, disc)
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


def _path_of(image: ImageInput) -> str | None:
    """The path a photo was read from, as given (None for bytes and arrays)."""
    if isinstance(image, str):
        return image
    if isinstance(image, os.PathLike):
        return os.fspath(image)
    return None


MIN_SIDE = 8
"""Fewest pixels a side of a photo may have (a 1 x 40,000 strip is not a photograph)."""


def to_rgb(image: ImageInput) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a path, bytes or an array (typed errors on bad input)."""
    from retinascreen.errors import NotAnImageError

    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise NotAnImageError(f"expected an RGB image array (H, W, 3), got shape {image.shape}")
        if min(arr.shape[:2]) < MIN_SIDE:
            height, width = arr.shape[:2]
            raise NotAnImageError(
                f"the image is {width} x {height} pixels (width x height): not a photograph (a fundus "
                f"photograph is roughly square; each side must be at least {MIN_SIDE} pixels)"
            )
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr)) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    if isinstance(image, bytes | bytearray | memoryview):
        from retinascreen.data.images import load_image

        return load_image(bytes(image))
    if isinstance(image, str | os.PathLike):
        from retinascreen.data.images import load_image

        path = Path(image)
        if path.is_dir():
            raise NotAnImageError(f"{path} is a directory, not an image")
        if not path.exists():
            raise NotAnImageError(f"{path}: no such file")
        return load_image(path)
    raise NotAnImageError(f"cannot read an image from a {type(image).__name__}")
