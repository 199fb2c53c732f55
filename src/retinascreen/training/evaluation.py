"""Evaluate a model on records: predictions, ``metrics.json`` and its figures.

Shared by ``retinascreen train`` (test split after training) and ``retinascreen evaluate``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.errors import ModelError
from retinascreen.metrics import (
    compute_metrics,
    plot_confusion,
    plot_roc,
    referable_scores,
    threshold_for_sensitivity,
)


def progress_verbosity() -> int:
    """Keras ``verbose``: a live bar (1) on a terminal, one line per epoch (2) otherwise."""
    return 1 if sys.stdout.isatty() else 2


def load_keras_model(path: str | Path):
    """Load a ``.keras`` model with retinascreen's custom layers registered."""
    from retinascreen._backend import ensure_backend

    ensure_backend()
    import keras

    import retinascreen.models  # noqa: F401  (registers custom layers)
    import retinascreen.ordinal  # noqa: F401  (registers OrdinalProbabilities)

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file for the user
        raise ModelError(f"{path} could not be loaded as a Keras model ({exc})") from exc


def predict_dataset(model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, outputs)`` over a ``(images, labels)`` tf.data set, in its order."""
    labels, outputs = [], []
    for images, y in dataset:
        outputs.append(np.asarray(model.predict_on_batch(images), dtype=np.float64))
        labels.append(np.asarray(y))
    if not outputs:
        return np.zeros((0,), dtype=int), np.zeros((0, 5))
    return np.concatenate(labels).astype(int), np.concatenate(outputs)


def choose_threshold(
    y_val: Sequence[int] | None,
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
    y_true: Sequence[int],
    probabilities: np.ndarray,
    out_dir: str | Path,
    *,
    threshold: float = 0.5,
    threshold_rule: str = "default 0.5",
    target_sensitivity: float | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``confusion.png`` and ``roc.png`` to ``out_dir``; return metrics."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(y_true, probabilities, referable_threshold=threshold)
    metrics["referable"]["threshold_rule"] = threshold_rule
    if target_sensitivity is not None:
        metrics["referable"]["target_sensitivity"] = float(target_sensitivity)
    metrics.update(extra or {})
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion(metrics["confusion_matrix"], out / "confusion.png")
    plot_roc(y_true, referable_scores(probabilities), out / "roc.png", metrics["referable"])
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
