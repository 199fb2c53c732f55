"""Evaluate a model on records: predictions, ``metrics.json`` and its figures.

Shared by ``retinascreen train`` (test split after training, :func:`write_evaluation`) and
``retinascreen evaluate`` (:func:`evaluate_model`: a saved ``.keras``, ``.onnx`` or run
directory on a graded data set).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.data.datasets import EVALUATION_SPLITS as SPLITS
from retinascreen.errors import ConfigError, DatasetError, ModelError
from retinascreen.grading import N_CLASSES, grade_rule
from retinascreen.models.metrics import (
    compute_metrics,
    plot_confusion,
    plot_roc,
    referable_scores,
    threshold_for_sensitivity,
)
from retinascreen.training.config import TrainConfig, load_config
from retinascreen.training.run import CONFUSION_FILE, METRICS_FILE, ROC_FILE

__all__ = [
    "SPLITS",
    "choose_threshold",
    "evaluate_model",
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


def _run_config(model_path: Path) -> TrainConfig | None:
    """The training config beside a model (its run directory), if there is one."""
    for folder in (model_path, model_path.parent):
        if folder.is_dir() and (folder / "config.toml").is_file():
            return load_config(folder / "config.toml")
    return None


def _predict_records(
    predict: PredictFn,
    records: Sequence[Any],
    preprocessing: Any,
    batch_size: int,
    cache_dir: str | Path | None,
) -> tuple[np.ndarray, np.ndarray]:
    from retinascreen.data.pipeline import make_dataset

    ds = make_dataset(
        records,
        preprocessing=preprocessing,
        batch_size=batch_size,
        training=False,
        cache_dir=cache_dir,
    )
    return predict_dataset(predict, ds)


def evaluate_model(
    model: str | Path,
    data: str | Path,
    fmt: str,
    *,
    split: str = "test",
    out: str | Path | None = None,
    target_sensitivity: float | None = None,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """Write ``metrics.json``, ``confusion.png``, ``roc.png``; return ``(metrics, out_dir)``."""
    from retinascreen.data.datasets import load_dataset, split_dataset
    from retinascreen.serving.predictor import Predictor

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    model_path = Path(model).expanduser()
    if not model_path.exists():
        raise ModelError(f"model not found: {model_path}")
    predictor = Predictor(model_path, engine="keras" if model_path.suffix == ".keras" else "auto")
    card = predictor.card
    records = load_dataset(data, fmt)
    run_config = _run_config(model_path)
    settings = run_config or TrainConfig()
    if split == "all":
        chosen, val_records = records, []
    else:
        splits = split_dataset(
            records, val=settings.val, test=settings.test, seed=settings.data_split_seed
        )
        chosen, val_records = splits[split], splits["val"]
    if not chosen:
        raise DatasetError(f"the {split} split of {data} is empty ({len(records)} images in all)")

    card_threshold = card.extra.get("referable_threshold") if card is not None else None
    predict = predictor.predict_arrays
    if target_sensitivity is not None:
        if not val_records:
            raise ConfigError("--target-sensitivity needs a validation split: use --split test")
        y_val, p_val = _predict_records(
            predict, val_records, predictor.preprocessing, batch_size, cache_dir
        )
        threshold, rule = choose_threshold(y_val, p_val, target_sensitivity)
    elif card_threshold is not None:
        threshold, rule = float(card_threshold), "the model card's referable threshold"
    else:
        threshold, rule = choose_threshold(None, None, None)

    y, p = _predict_records(predict, chosen, predictor.preprocessing, batch_size, cache_dir)
    out_dir = (
        Path(out)
        if out
        else ((model_path if model_path.is_dir() else model_path.parent) / f"eval-{split}")
    )
    extra = {
        "split": split,
        "data": str(data),
        "format": fmt,
        "model": {"path": str(predictor.model_path), **predictor.model_info.to_dict()},
    }
    metrics = write_evaluation(
        y,
        p,
        out_dir,
        threshold=threshold,
        threshold_rule=rule,
        target_sensitivity=target_sensitivity,
        extra=extra,
        grade_rule=grade_rule(card.objective if card is not None else None),
    )
    return metrics, out_dir
