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
from typing import Any, Protocol

import numpy as np

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


def calibration_note(record: Any) -> str:
    """One line on a model card's ``site_calibration`` record ("" when there is none)."""
    if not isinstance(record, dict) or not record.get("site"):
        return ""
    text = f"Recalibrated for {record['site']}"
    if record.get("date"):
        text += f" on {record['date']}"
    if record.get("photos"):
        text += f" with {record['photos']} of its graded photos"
        if record.get("patients"):
            text += f" ({record['patients']} patients)"
    if record.get("threshold") is not None and record.get("target_sensitivity") is not None:
        (share,) = _percents(float(record["target_sensitivity"]))
        text += f": referral threshold {float(record['threshold']):.3f} for {share} sensitivity"
    return text + "."


@dataclass(frozen=True)
class ModelInfo:
    """Which model graded a photo: identity from its file and card, and its training data."""

    name: str
    version: str
    sha256: str
    synthetic: bool = False
    training_data: str = field(default="", compare=False)
    intended_use: str = field(default="", compare=False)
    calibration: str = field(default="", compare=False)  # calibration_note() of its card

    @classmethod
    def from_card(cls, card: Any, fallback_name: str, sha256: str = "") -> ModelInfo:
        """A model's identity from its card (a :class:`retinascreen.models.modelcard.ModelCard`;
        ``fallback_name``, unversioned, without one)."""
        return cls(
            name=str(card.name if card and card.name else fallback_name),
            version=str(card.version if card and card.version else "unversioned"),
            sha256=sha256,
            synthetic=bool(card.synthetic) if card else False,
            training_data=str(card.training_data) if card else "",
            intended_use=str(card.intended_use) if card else "",
            calibration=calibration_note(card.extra.get("site_calibration")) if card else "",
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
        return " ".join(t for t in (text, self.calibration, self.intended_use) if t)

    def summary(self) -> dict[str, Any]:
        """``{"name", "version", "sha256", "training_data", "synthetic"}`` (a map's model, as a
        screening stores it)."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "training_data": self.training_data,
            "synthetic": self.synthetic,
        }

    def to_dict(self) -> dict[str, str]:
        """The result's ``model`` object: ``{"name", "version", "sha256"}``."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class ReferralRule:
    """How a model decides referral: referable probability >= ``threshold``.

    ``target_sensitivity``: the share of referable eyes the threshold was chosen to catch (on
    validation or on a site's own photos), when the model card says so.
    """

    threshold: float
    target_sensitivity: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> ReferralRule | None:
        """Inverse of :meth:`to_dict` (None for anything else, e.g. an older stored result)."""
        if not isinstance(data, dict) or data.get("threshold") is None:
            return None
        target = data.get("target_sensitivity")
        return cls(float(data["threshold"]), None if target is None else float(target))

    def to_dict(self) -> dict[str, float | None]:
        return {"threshold": self.threshold, "target_sensitivity": self.target_sensitivity}


def _percents(*values: float) -> list[str]:
    """Values as whole percents ("22 %"), with more decimals where that makes them differ."""
    for decimals in (0, 1, 2):
        texts = [f"{v * 100:.{decimals}f} %" for v in values]
        if len(set(texts)) == len(set(values)):
            break
    return texts


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
    # The model's referral threshold (None: referable means grade >= 2).
    referral_rule: ReferralRule | None = field(default=None, compare=False)
    # SPEC ``anatomy`` (disc, fovea, laterality; serving/anatomy.py) and the maculopathy
    # verdict with its rule (serving/maculopathy.py); None where they were not looked for.
    anatomy: dict[str, Any] | None = field(default=None, compare=False)
    maculopathy: bool | None = field(default=None, compare=False)
    maculopathy_rule: str | None = field(default=None, compare=False)

    @property
    def gradable(self) -> bool:
        return self.quality.gradable

    @property
    def referral_note(self) -> str | None:
        """One plain sentence on why the referral decision and the grade disagree, else None.

        The decision compares the referable probability with the model's threshold, so an eye
        whose predicted grade is 0 or 1 can be referred (and one graded 2+ not referred). The
        web page, the PDF report, the CLI and the API all show this same sentence. None for an
        ungradable photo (it gets "retake the photograph", not a decision).
        """
        from retinascreen.grading import REFERABLE_MIN_GRADE

        rule = self.referral_rule
        graded_referable = self.grade >= REFERABLE_MIN_GRADE
        if self.maculopathy and self.referable and self.gradable and not graded_referable:
            return (
                f"Referred for suspected maculopathy ({self.maculopathy_rule}) although the "
                f"predicted grade is {self.grade} ({self.label})."
            )
        if rule is None or not self.gradable or graded_referable == self.referable:
            return None
        p, t = _percents(self.referable_probability, rule.threshold)
        if self.referable:
            verb = "is above" if self.referable_probability > rule.threshold else "reaches"
            start, compare = "Referred although", f"{verb} this model's referral threshold ({t})"
        else:
            start, compare = (
                "Not referred although",
                f"is below this model's referral threshold ({t})",
            )
        why = ""
        if rule.target_sensitivity is not None:
            (share,) = _percents(rule.target_sensitivity)
            why = f", which was chosen to catch {share} of referable eyes"
        return (
            f"{start} the predicted grade is {self.grade} ({self.label}): the probability of "
            f"referable DR ({p}) {compare}{why}."
        )

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
            referral_rule=ReferralRule.from_dict(data.get("referral_rule")),
            anatomy=data.get("anatomy"),
            maculopathy=data.get("maculopathy"),
            maculopathy_rule=data.get("maculopathy_rule"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The SPEC.md result JSON (``synthetic`` and ``warning`` only for synthetic models).

        ``referral_rule`` (the threshold the decision used, or null) and ``referral_note``
        (:attr:`referral_note`, null when grade and decision agree) follow ``model``.
        """
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
            "referral_rule": None if self.referral_rule is None else self.referral_rule.to_dict(),
            "referral_note": self.referral_note,
        }
        if self.anatomy is not None or self.maculopathy_rule is not None:
            result["anatomy"] = self.anatomy
            result["maculopathy"] = self.maculopathy
            result["maculopathy_rule"] = self.maculopathy_rule
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
    # The retinascreen.data.photo.FundusPhoto it came from (its field, crops and quality are
    # kept there, for the vessel and lesion maps of the same photo); None when not kept.
    photo: Any = field(default=None, compare=False, repr=False)


class GradingService(Protocol):
    """What the web app needs from a predictor (:class:`retinascreen.Predictor` is one)."""

    card: Any  # the retinascreen.models.modelcard.ModelCard, or None
    model_info: ModelInfo

    def predict(self, image: ImageInput) -> Prediction: ...

    # ``image``: a path, bytes, an RGB array or a retinascreen.data.photo.FundusPhoto.
    def prepare(self, image: Any) -> PreparedImage: ...

    def predict_prepared(self, prepared: PreparedImage) -> Prediction: ...

    def heatmap(
        self,
        image: ImageInput | PreparedImage,
        class_index: int | None = None,
        alpha: float = 0.4,
    ) -> np.ndarray: ...
