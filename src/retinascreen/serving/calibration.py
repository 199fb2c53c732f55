"""Site recalibration: fit a model's temperature and referral threshold on a clinic's own photos.

A model's probabilities and its referral threshold were chosen on its validation split; on
another camera and population they drift (the bundled model refers almost everybody on
external sets). :func:`calibrate_model` runs the model, exactly as :class:`Predictor` does,
on a graded sample from the site (any ``--format``), and

1. fits a temperature on the model's output by the negative log-likelihood of the grades
   (:mod:`retinascreen.models.calibration`); for a regression ("ordinal") model also an
   offset of its cumulative logits, because a site's photos may score higher or lower as a
   whole (camera, population, graders: srahim-dr's do), which a temperature alone cannot
   undo; then
2. picks the highest referable threshold whose sensitivity on the sample reaches the target
   (:func:`retinascreen.training.evaluation.choose_threshold`),

and writes a copy of the model file (``.keras`` stays ``.keras``, ``.onnx`` stays ``.onnx``,
weights untouched) whose card carries ``output_temperature``, ``output_offset`` (ordinal
models), ``referable_threshold`` and ``site_calibration`` (site, date, sample size, target,
and the figures before and after with 95 % bootstrap intervals over patients). Every
:class:`Predictor` of the copy applies them. Only gradable photos count: an ungradable photo
gets "retake", never a referral decision.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retinascreen.errors import ConfigError, DatasetError, RetinascreenError
from retinascreen.grading import REFERABLE_MIN_GRADE, grade_rule
from retinascreen.models.calibration import (
    fit_ordinal_scaling,
    fit_temperature,
    negative_log_likelihood,
    scale_probabilities,
)
from retinascreen.models.metrics import (
    DEFAULT_REFERABLE_THRESHOLD,
    bootstrap_intervals,
    compute_metrics,
    expected_calibration_error,
    referable_brier,
)

if TYPE_CHECKING:
    from retinascreen.data.datasets import Record
    from retinascreen.models.modelcard import ModelCard
    from retinascreen.serving.predictor import Predictor

MIN_PHOTOS = 50
"""Fewest gradable photos a site sample must have."""
DEFAULT_TARGET_SENSITIVITY = 0.9
BOOTSTRAP_RESAMPLES = 1000
REPORT_SUFFIX = ".calibration.json"
INTERVALS_METHOD = "95 % percentile bootstrap over patients"


@dataclass
class SiteSample:
    """A graded sample run through a model: grades, outputs and patients of the gradable photos."""

    grades: np.ndarray
    probabilities: np.ndarray
    patients: list[str]
    photos: int  # photos in the sample, gradable or not
    ungradable: int = 0
    unreadable: list[str] = field(default_factory=list)

    def subset(self, keep: np.ndarray) -> SiteSample:
        """The gradable photos where ``keep`` (a boolean mask) is true."""
        return SiteSample(
            self.grades[keep],
            self.probabilities[keep],
            [p for p, k in zip(self.patients, keep, strict=True) if k],
            int(keep.sum()),
        )


def run_sample(
    predictor: Predictor,
    records: Sequence[Record],
    *,
    calibrated: bool = True,
    batch_size: int = 16,
    progress: bool = True,
) -> SiteSample:
    """Grade ``records`` as :class:`Predictor` does; keep the gradable photos.

    ``calibrated=False``: the model's own probabilities, without its card's temperature.
    Photos that cannot be read are counted (their names kept), not fatal.
    """
    from tqdm import tqdm

    grades: list[int] = []
    patients: list[str] = []
    batches: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    ungradable, unreadable = 0, []

    def flush() -> None:
        if pending:
            batches.append(predictor.predict_arrays(np.stack(pending), calibrated=calibrated))
            pending.clear()

    bar = tqdm(
        records,
        desc="grading the site sample",
        unit="photo",
        file=sys.stderr,
        disable=True if not progress or len(records) < 20 else None,
        leave=False,
    )
    for record in bar:
        try:
            prepared = predictor.prepare(record.path)
        except (RetinascreenError, OSError):
            unreadable.append(record.path.name)
            continue
        if not prepared.quality.gradable:
            ungradable += 1
            continue
        pending.append(prepared.pixels)
        grades.append(int(record.grade))
        patients.append(str(record.patient))
        if len(pending) >= batch_size:
            flush()
    flush()
    probabilities = np.concatenate(batches) if batches else np.zeros((0, 5), dtype=np.float32)
    return SiteSample(
        np.asarray(grades, dtype=int),
        np.asarray(probabilities, dtype=np.float64),
        patients,
        len(records),
        ungradable,
        unreadable,
    )


def check_sample(sample: SiteSample, min_photos: int = MIN_PHOTOS) -> None:
    """Raise :class:`DatasetError` when the sample cannot calibrate a model."""
    if sample.unreadable and len(sample.unreadable) == sample.photos:
        raise DatasetError(
            f"none of the {sample.photos} photos of the sample could be read "
            f"(first: {', '.join(sample.unreadable[:3])})"
        )
    n = len(sample.grades)
    if n == 0:
        raise DatasetError(
            f"all {sample.photos} photos of the sample are ungradable (too dark, blurred, "
            "over-exposed or no fundus): a model cannot be calibrated on them"
        )
    if n < min_photos:
        raise DatasetError(
            f"the sample has {n} gradable photos; at least {min_photos} are needed to "
            "calibrate (a few hundred give usable intervals)"
        )
    referable = int((sample.grades >= REFERABLE_MIN_GRADE).sum())
    if referable == 0 or referable == n:
        kind = "non-referable (grade 0-1)" if referable == 0 else "referable (grade 2-4)"
        raise DatasetError(
            f"every one of the {n} gradable photos is {kind}: the sample needs both referable "
            "and non-referable eyes to choose a referral threshold"
        )


def site_figures(
    grades: np.ndarray,
    probabilities: np.ndarray,
    patients: Sequence[str],
    *,
    threshold: float,
    rule: str = "most-probable",
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, Any]:
    """Sensitivity, specificity, AUC, QWK, ECE, NLL and the referable probability's Brier score
    at ``threshold``, with 95 % intervals."""
    metrics = compute_metrics(grades, probabilities, referable_threshold=threshold, grade_rule=rule)
    ref = metrics["referable"]
    return {
        "threshold": float(threshold),
        "sensitivity": ref["sensitivity"],
        "specificity": ref["specificity"],
        "auc": ref["auc"],
        "qwk": metrics["qwk"],
        "accuracy": metrics["accuracy"],
        "ece": expected_calibration_error(grades, probabilities),
        "nll": negative_log_likelihood(grades, probabilities),
        "referable_brier": referable_brier(grades, probabilities),
        "referred": float((probabilities[:, REFERABLE_MIN_GRADE:].sum(axis=1) >= threshold).mean()),
        "positives": ref["positives"],
        "negatives": ref["negatives"],
        "intervals": {
            "method": f"{INTERVALS_METHOD}, {resamples} resamples",
            **bootstrap_intervals(
                grades,
                probabilities,
                threshold=threshold,
                groups=list(patients),
                n=resamples,
                seed=seed,
                grade_rule=rule,
            ),
        },
    }


def fit_site(
    sample: SiteSample,
    card: ModelCard | None,
    *,
    site: str,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """The ``site_calibration`` record: fitted temperature and threshold, figures before/after.

    ``sample`` holds the model's own (uncalibrated) probabilities; "before" is the model as it
    predicts today (its card's temperature and threshold), "after" the recalibrated one.
    """
    from retinascreen.serving.predictor import output_offset, output_temperature
    from retinascreen.training.evaluation import choose_threshold

    check_target(target_sensitivity)
    check_sample(sample)
    objective = card.objective if card is not None else "softmax"
    rule = grade_rule(objective)
    y, raw = sample.grades, sample.probabilities
    old_temperature, old_offset = output_temperature(card), output_offset(card)
    old_threshold = card.extra.get("referable_threshold") if card is not None else None
    if objective == "ordinal":
        temperature, offset = fit_ordinal_scaling(y, raw)
    else:
        temperature, offset = fit_temperature(y, raw, objective), 0.0
    after = scale_probabilities(raw, temperature, objective, offset)
    threshold, _ = choose_threshold(y, after, target_sensitivity)
    before_threshold = DEFAULT_REFERABLE_THRESHOLD if old_threshold is None else old_threshold
    before = scale_probabilities(raw, old_temperature, objective, old_offset)
    figures = {
        name: site_figures(y, p, sample.patients, threshold=t, rule=rule, resamples=resamples)
        for name, p, t in (("before", before, before_threshold), ("after", after, threshold))
    }
    figures["before"]["temperature"] = old_temperature
    figures["after"]["temperature"] = temperature
    if objective == "ordinal":
        figures["before"]["offset"] = old_offset
        figures["after"]["offset"] = offset
    if old_threshold is None:
        figures["before"]["threshold_rule"] = "default 0.5 (the model card has no threshold)"
    record: dict[str, Any] = {
        "site": site,
        "date": datetime.now(UTC).date().isoformat(),
        "photos": int(len(y)),
        "patients": len(set(sample.patients)),
        "photos_in_sample": sample.photos,
        "ungradable_excluded": sample.ungradable,
        "unreadable_excluded": len(sample.unreadable),
        "grades": [int((y == g).sum()) for g in range(raw.shape[1])],
        "target_sensitivity": float(target_sensitivity),
        "temperature": temperature,
        "temperature_applies_to": (
            "the cumulative grade logits, logit P(grade >= k), of the model's output, "
            "after the offset is subtracted"
            if objective == "ordinal"
            else "the log-probabilities of the model's output (softmax temperature)"
        ),
        **({"offset": offset} if objective == "ordinal" else {}),
        "threshold": float(threshold),
        "threshold_rule": (
            f"highest threshold with sensitivity >= {target_sensitivity:g} on this site's sample"
        ),
        **figures,
    }
    layer_temperature = card.extra.get("temperature") if card is not None else None
    if objective == "ordinal" and layer_temperature:
        record["effective_ordinal_temperature"] = float(layer_temperature) * temperature
    previous = card.extra.get("site_calibration") if card is not None else None
    if isinstance(previous, dict):
        record["replaces"] = {k: previous.get(k) for k in ("site", "date", "photos")}
    return record


def check_target(target_sensitivity: float) -> None:
    if not 0.0 < float(target_sensitivity) <= 1.0:
        raise ConfigError(f"--target-sensitivity must be in (0, 1], got {target_sensitivity}")


def default_output(model_path: Path, site: str) -> Path:
    """``<stem>-<site>.<suffix>`` beside the model file."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", site).strip("-._") or "site"
    return model_path.with_name(f"{model_path.stem}-{slug}{model_path.suffix}")


def calibrated_card(card: ModelCard | None, predictor: Predictor, record: dict[str, Any]) -> Any:
    """A copy of ``card`` (a minimal one if the model had none) with the site calibration."""
    from retinascreen.models.modelcard import ModelCard

    if card is None:
        card = ModelCard(
            name=predictor.model_info.name,
            version=predictor.model_info.version,
            backbone="unknown",
            head="unknown",
            input_size=predictor.input_size,
            preprocessing=predictor.preprocessing.to_dict(),
        )
    new = ModelCard.from_dict(json.loads(card.to_json()))
    new.extra["referable_threshold"] = record["threshold"]
    new.extra["output_temperature"] = record["temperature"]
    if "offset" in record:
        new.extra["output_offset"] = record["offset"]
    new.extra["site_calibration"] = record
    return new


@dataclass
class CalibrationResult:
    """What :func:`calibrate_model` wrote: the calibrated model, its report and the record."""

    model: Path
    calibrated: Path
    report: Path
    record: dict[str, Any]


def calibrate_model(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    fmt: str,
    *,
    site: str | None = None,
    target_sensitivity: float = DEFAULT_TARGET_SENSITIVITY,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    records: Sequence[Record] | None = None,
    batch_size: int = 16,
    resamples: int = BOOTSTRAP_RESAMPLES,
    progress: bool = True,
) -> CalibrationResult:
    """Recalibrate ``model`` on the graded photos at ``data`` and write the calibrated copy.

    ``records``: use these records of the data set instead of all of them. The copy goes to
    ``out`` (default: ``<stem>-<site>`` beside the model), its report to ``out`` +
    ``.calibration.json``; the input model is never overwritten.
    """
    from retinascreen.data.datasets import load_dataset
    from retinascreen.models.engines import resolve_model_path
    from retinascreen.models.modelcard import file_sha256, write_card
    from retinascreen.serving.predictor import Predictor

    check_target(target_sensitivity)
    if resamples < 1:
        raise ConfigError(f"--bootstrap must be at least 1, got {resamples}")
    model_path = resolve_model_path(model)
    site_name = site or Path(data).resolve().name
    target = Path(out) if out is not None else default_output(model_path, site_name)
    if target.suffix.lower() != model_path.suffix.lower():
        raise ConfigError(
            f"--out {target.name}: the calibrated copy of a {model_path.suffix} model must be a "
            f"{model_path.suffix} file"
        )
    if target.exists() and target.resolve() == model_path.resolve():
        raise ConfigError(f"--out {target} is the input model: choose another file")
    if target.exists() and not force:
        raise ConfigError(f"{target} exists: pass --force to replace it, or choose another --out")
    if not target.parent.is_dir():
        raise ConfigError(f"--out {target}: folder {target.parent} does not exist")
    predictor = Predictor(model_path)
    chosen = list(records) if records is not None else load_dataset(Path(data), fmt)
    sample = run_sample(
        predictor, chosen, calibrated=False, batch_size=batch_size, progress=progress
    )
    record = fit_site(
        sample,
        predictor.card,
        site=site_name,
        target_sensitivity=target_sensitivity,
        resamples=resamples,
    )
    record["data"] = {"path": str(data), "format": fmt}
    card = calibrated_card(predictor.card, predictor, record)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(model_path, tmp)
        write_card(tmp, card)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    report = target.with_name(target.name + REPORT_SUFFIX)
    summary = {
        "model": {"path": str(model_path), "sha256": file_sha256(model_path)},
        "calibrated_model": {"path": str(target), "sha256": file_sha256(target)},
        **record,
    }
    report.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return CalibrationResult(model_path, target, report, record)


def _interval(figures: dict[str, Any], key: str) -> str:
    value = figures.get(key)
    if value is None:
        return "n/a"
    low_high = figures.get("intervals", {}).get(key)
    if not low_high:
        return f"{value:.3f}"
    return f"{value:.3f} [{low_high[0]:.3f}, {low_high[1]:.3f}]"


def format_table(record: dict[str, Any]) -> str:
    """Before/after table of a ``site_calibration`` record (temperature, offset, threshold,
    sens., spec., AUC, QWK, ECE, referable Brier)."""
    before, after = record["before"], record["after"]

    def plain(label: str, key: str) -> tuple[str, str, str]:
        return (label, f"{before[key]:.3f}", f"{after[key]:.3f}")

    rows = [("", "before", "after"), plain("temperature", "temperature")]
    if "offset" in after:  # ordinal models
        rows.append(plain("offset", "offset"))
    rows.append(plain("threshold", "threshold"))
    for key in ("sensitivity", "specificity", "auc", "qwk"):
        rows.append((key, _interval(before, key), _interval(after, key)))
    rows.append(("referred", f"{before['referred']:.1%}", f"{after['referred']:.1%}"))
    rows += [plain("ECE", "ece"), plain("referable Brier", "referable_brier")]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )
