"""Evaluate a model on records: predictions, ``metrics.json`` and its figures.

Shared by ``retinascreen train`` (test split after training, :func:`write_evaluation`) and
``retinascreen evaluate`` (:func:`retinascreen.serving.evaluation.evaluate_model`, which grades
with the Predictor, a layer above this one).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.data.datasets import EVALUATION_SPLITS as SPLITS
from retinascreen.grading import N_CLASSES
from retinascreen.models.metrics import (
    compute_metrics,
    plot_confusion,
    plot_roc,
    referable_scores,
    threshold_for_sensitivity,
)
from retinascreen.training.run import CONFUSION_FILE, METRICS_FILE, ROC_FILE

__all__ = [
    "SPLITS",
    "choose_threshold",
    "predict_dataset",
    "progress_verbosity",
    "summary",
    "write_evaluation",
]

PredictFn = Callable[[np.ndarray], Any]


def progress_verbosity() -> int:
    """Keras ``verbose``: a live bar (1) on a terminal, one line per epoch (2) otherwise."""
    return 1 if sys.stdout.isatty() else 2


def predict_dataset(
    predict: PredictFn | Any, dataset: Iterable[tuple[Any, Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, outputs)`` over a ``(images, labels)`` data set (e.g. tf.data), in its order.

    ``predict`` is a callable from a numpy batch of images to model outputs (such as
    :meth:`retinascreen.Predictor.predict_arrays`), or a Keras model, whose
    ``predict_on_batch`` is used.
    """
    fn: PredictFn = predict.predict_on_batch if hasattr(predict, "predict_on_batch") else predict
    labels, outputs = [], []
    for images, y in dataset:
        outputs.append(np.asarray(fn(np.asarray(images)), dtype=np.float64))
        labels.append(np.asarray(y))
    if not outputs:
        return np.zeros((0,), dtype=int), np.zeros((0, N_CLASSES))
    return np.concatenate(labels).astype(int), np.concatenate(outputs)


def choose_threshold(
    y_val: Sequence[int] | np.ndarray | None,
    p_val: np.ndarray | None,
    target_sensitivity: float | None,
) -> tuple[float, str]:
    """Referable threshold and how it was chosen (0.5 unless a target sensitivity is given)."""
    if target_sensitivity is None:
        return 0.5, "default 0.5"
    if y_val is None or p_val is None or len(y_val) == 0:
        return 0.5, "default 0.5 (no validation cases to choose a threshold on)"
    try:
        threshold = threshold_for_sensitivity(y_val, referable_scores(p_val), target_sensitivity)
    except ValueError as exc:
        return 0.5, f"default 0.5 ({exc})"
    return threshold, f"highest threshold with validation sensitivity >= {target_sensitivity:g}"


def write_evaluation(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    out_dir: str | Path,
    *,
    threshold: float = 0.5,
    threshold_rule: str = "default 0.5",
    target_sensitivity: float | None = None,
    extra: dict[str, Any] | None = None,
    grade_rule: str = "most-probable",
) -> dict[str, Any]:
    """Write ``metrics.json``, ``confusion.png`` and ``roc.png`` to ``out_dir``; return metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(
        y_true, probabilities, referable_threshold=threshold, grade_rule=grade_rule
    )
    metrics["grade_rule"] = grade_rule
    metrics["referable"]["threshold_rule"] = threshold_rule
    if target_sensitivity is not None:
        metrics["referable"]["target_sensitivity"] = float(target_sensitivity)
    metrics.update(extra or {})
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion(metrics["confusion_matrix"], out / CONFUSION_FILE)
    plot_roc(y_true, referable_scores(probabilities), out / ROC_FILE, metrics["referable"])
    return metrics


def summary(metrics: dict[str, Any]) -> str:
    """Three human lines about a metrics dict."""
    ref = metrics["referable"]

    def fmt(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    return (
        f"n={metrics['n']}  QWK {fmt(metrics['qwk'])}  accuracy {fmt(metrics['accuracy'])}  "
        f"macro F1 {fmt(metrics['macro_f1'])}\n"
        f"referable DR: AUC {fmt(ref['auc'])}  sensitivity {fmt(ref['sensitivity'])}  "
        f"specificity {fmt(ref['specificity'])} at threshold {ref['threshold']:.3f}"
    )
