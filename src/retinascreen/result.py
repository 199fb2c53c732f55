"""The typed prediction result: one home for what a graded photograph is (SPEC.md result).

:class:`Prediction` is what :meth:`retinascreen.Predictor.predict` returns; its
:meth:`Prediction.to_dict` is the SPEC.md "Prediction result" JSON (CLI ``--json``, REST API,
database). :class:`Quality` is the gradability verdict, :class:`ModelInfo` says which model gave
the result, :class:`PredictionError` stands in for an unreadable photo in a batch, and
:class:`GradingService` is what the web app needs from a predictor.

This module imports only numpy and the standard library, so every layer may import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from retinascreen.models.modelcard import ModelCard

SYNTHETIC_WARNING = "model trained on synthetic data only: not for clinical use"

ImageInput = str | os.PathLike[str] | bytes | np.ndarray


@dataclass(frozen=True)
class Quality:
    """Gradability verdict: ``score`` 0..1 (>= 0.5 exactly when gradable) and the reasons."""

    gradable: bool
    score: float
    reasons: tuple[str, ...] = ()
    measures: dict[str, float] = field(default_factory=dict, compare=False)
    # EyeQ's three-way scale: "good", "usable" or "reject" (None where no model judged it).
    label: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "gradable", bool(self.gradable))
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "reasons", tuple(str(r) for r in self.reasons))
        object.__setattr__(self, "measures", {str(k): float(v) for k, v in self.measures.items()})

    def rounded(self) -> Quality:
        """The same verdict with the score to 3 decimals (as results report it)."""
        return Quality(
            self.gradable, round(self.score, 3), self.reasons, self.measures, label=self.label
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"gradable", "score" (3 decimals), "reasons", "measures", "label"}`` (``quality``)."""
        result: dict[str, Any] = {
            "gradable": self.gradable,
            "score": round(self.score, 3),
            "reasons": list(self.reasons),
            "measures": dict(self.measures),
        }
        if self.label is not None:
            result["label"] = self.label
        return result


@dataclass(frozen=True)
class ModelInfo:
    """Which model graded a photo: identity from its file and card, and its training data."""

    name: str
    version: str
    sha256: str
    synthetic: bool = False
    training_data: str = field(default="", compare=False)
    intended_use: str = field(default="", compare=False)

    @classmethod
    def from_card(cls, card: ModelCard | None, fallback_name: str, sha256: str = "") -> ModelInfo:
        """A model's identity from its card (``fallback_name``, unversioned, without one)."""
        return cls(
            name=str(card.name if card and card.name else fallback_name),
            version=str(card.version if card and card.version else "unversioned"),
            sha256=sha256,
            synthetic=bool(card.synthetic) if card else False,
            training_data=str(card.training_data) if card else "",
            intended_use=str(card.intended_use) if card else "",
        )

    @property
    def warning(self) -> str | None:
        """The warning every result of this model carries (None for a model of real data)."""
        return SYNTHETIC_WARNING if self.synthetic else None

    @property
    def notice(self) -> str:
        """What the model was trained on and is meant for, in its card's own words."""
        parts = [f"{self.name} {self.version}"]
        if self.training_data:
            parts.append(f"trained on {self.training_data}")
        elif self.synthetic:
            parts.append("trained on synthetic images")
        else:
            parts.append("training data not stated in its model card")
        text = ", ".join(parts) + "."
        return f"{text} {self.intended_use}".strip()

    def to_dict(self) -> dict[str, str]:
        """The result's ``model`` object: ``{"name", "version", "sha256"}``."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Prediction:
    """One graded photograph (SPEC.md "Prediction result"); see :meth:`to_dict`."""

    grade: int
    label: str
    probabilities: tuple[float, ...]
    referable: bool
    referable_probability: float
    quality: Quality  # score to 3 decimals, as in to_dict()
    model: ModelInfo
    path: str | None = field(default=None, compare=False)  # where it was read from, if a file

    @property
    def gradable(self) -> bool:
        return self.quality.gradable

    @property
    def synthetic(self) -> bool:
        return self.model.synthetic

    @property
    def warning(self) -> str | None:
        return self.model.warning

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        """Inverse of :meth:`to_dict` (e.g. a result stored as JSON); extra keys are ignored."""
        quality, model = data["quality"], data["model"]
        return cls(
            grade=int(data["grade"]),
            label=str(data["label"]),
            probabilities=tuple(float(p) for p in data["probabilities"]),
            referable=bool(data["referable"]),
            referable_probability=float(data["referable_probability"]),
            quality=Quality(
                bool(data["gradable"]),
                quality["score"],
                quality["reasons"],
                quality.get("measures", {}),
                label=quality.get("label"),
            ),
            model=ModelInfo(
                name=str(model["name"]),
                version=str(model["version"]),
                sha256=str(model["sha256"]),
                synthetic=bool(data.get("synthetic", False)),
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The SPEC.md result JSON (``synthetic`` and ``warning`` only for synthetic models)."""
        result: dict[str, Any] = {
            "grade": self.grade,
            "label": self.label,
            "probabilities": list(self.probabilities),
            "referable": self.referable,
            "referable_probability": self.referable_probability,
            "gradable": self.gradable,
            "quality": {
                key: value for key, value in self.quality.to_dict().items() if key != "gradable"
            },
            "model": self.model.to_dict(),
        }
        if self.model.synthetic:
            result["synthetic"] = True
            result["warning"] = SYNTHETIC_WARNING
        return result


@dataclass(frozen=True)
class PredictionError:
    """A photo of a batch that could not be graded (``predict_batch(..., errors="include")``)."""

    error: str
    error_type: str
    path: str | None = None

    @classmethod
    def from_exception(cls, exc: Exception, path: str | None = None) -> PredictionError:
        return cls(str(exc), type(exc).__name__, path)

    def to_dict(self) -> dict[str, str]:
        """``{"error": message, "error_type": class name}``."""
        return {"error": self.error, "error_type": self.error_type}


@dataclass(frozen=True)
class PreparedImage:
    """A photo read, quality-checked and pre-processed once, ready to grade and to explain."""

    pixels: np.ndarray  # (S, S, 3) uint8: the picture the model sees
    quality: Quality
    path: str | None = None
    # The same crop without the model's enhancement (Ben Graham, CLAHE), as a person sees it;
    # None when the model sees the plain crop.
    view: np.ndarray | None = None


class GradingService(Protocol):
    """What the web app needs from a predictor (:class:`retinascreen.Predictor` is one)."""

    card: ModelCard | None
    model_info: ModelInfo

    def predict(self, image: ImageInput) -> Prediction: ...

    def prepare(self, image: ImageInput) -> PreparedImage: ...

    def predict_prepared(self, prepared: PreparedImage) -> Prediction: ...

    def heatmap(
        self,
        image: ImageInput | PreparedImage,
        class_index: int | None = None,
        alpha: float = 0.4,
    ) -> np.ndarray: ...
