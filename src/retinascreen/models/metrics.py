"""Screening metrics (SPEC.md "Metrics") and the figures that go with them.

``compute_metrics`` turns ground-truth grades and 5-way probabilities into the ``metrics.json``
dictionary: quadratic weighted kappa (scikit-learn), accuracy, macro F1, the 5x5 confusion
matrix (rows = truth), per-grade precision/recall/support and the referable-DR operating
point (referable probability = P(grade 2) + P(grade 3) + P(grade 4)).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from retinascreen.grading import GRADES, LABELS, N_CLASSES, REFERABLE_MIN_GRADE, predicted_grades

DEFAULT_REFERABLE_THRESHOLD = 0.5


def _as_grades(y_true: Sequence[int] | np.ndarray) -> np.ndarray:
    y = np.asarray(y_true).astype(int).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise ValueError(f"grades must be in 0..{N_CLASSES - 1}, got {sorted(set(y.tolist()))}")
    return y


def _as_probabilities(probabilities: Sequence[Sequence[float]] | np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != N_CLASSES or p.shape[0] != n:
        raise ValueError(f"expected probabilities of shape ({n}, {N_CLASSES}), got {p.shape}")
    return p


def referable_scores(probabilities: np.ndarray) -> np.ndarray:
    """Referable probability of each row: the mass on grades 2, 3 and 4."""
    return np.asarray(probabilities, dtype=np.float64)[:, REFERABLE_MIN_GRADE:].sum(axis=1)


def quadratic_kappa(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray
) -> float:
    """Quadratic weighted kappa on the fixed label set 0..4 (scikit-learn's implementation).

    Returns 0.0 instead of NaN when kappa is undefined (a single grade in truth and prediction).
    """
    from sklearn.metrics import cohen_kappa_score

    y_t, y_p = _as_grades(y_true), _as_grades(y_pred)
    if y_t.size == 0:
        return float("nan")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        kappa = cohen_kappa_score(y_t, y_p, weights="quadratic", labels=list(GRADES))
    return 0.0 if math.isnan(kappa) else float(kappa)


def _none_if_nan(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def referable_operating_point(
    y_true: Sequence[int] | np.ndarray,
    p_referable: Sequence[float] | np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """AUC, sensitivity and specificity for referable DR at ``threshold`` (p >= threshold)."""
    from sklearn.metrics import roc_auc_score

    truth = _as_grades(y_true) >= REFERABLE_MIN_GRADE
    scores = np.asarray(p_referable, dtype=np.float64).reshape(-1)
    flagged = scores >= threshold
    positives, negatives = int(truth.sum()), int((~truth).sum())
    result: dict[str, Any] = {
        "auc": None,
        "sensitivity": (float((flagged & truth).sum() / positives) if positives else None),
        "specificity": (float((~flagged & ~truth).sum() / negatives) if negatives else None),
        "threshold": float(threshold),
        "positives": positives,
        "negatives": negatives,
    }
    if positives and negatives:
        result["auc"] = float(roc_auc_score(truth, scores))
    else:
        only = "referable" if positives else "non-referable"
        result["note"] = f"AUC undefined: every case is {only}"
    return result


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    *,
    referable_threshold: float | None = None,
    grade_rule: str = "most-probable",
) -> dict[str, Any]:
    """The ``metrics.json`` dictionary of SPEC.md for grades ``y_true`` and (n, 5) probabilities.

    The predicted grade is the most probable one (the median for ``grade_rule="median"``,
    regression models); referable DR is flagged when the referable
    probability reaches ``referable_threshold`` (0.5 unless given).
    """
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    y = _as_grades(y_true)
    p = _as_probabilities(probabilities, len(y))
    if len(y) == 0:
        raise ValueError("cannot compute metrics on zero cases")
    pred = predicted_grades(p, grade_rule)
    labels = list(GRADES)
    cm = confusion_matrix(y, pred, labels=labels)
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0
    )
    per_class = {
        str(g): {
            "label": LABELS[g],
            "precision": float(precision[g]),
            "recall": float(recall[g]),
            "f1": float(f1[g]),
            "support": int(support[g]),
        }
        for g in labels
    }
    threshold = DEFAULT_REFERABLE_THRESHOLD if referable_threshold is None else referable_threshold
    # Macro F1 over the grades present in truth or prediction (absent grades would count as 0).
    present = sorted(set(y.tolist()) | set(pred.tolist()))
    return {
        "qwk": quadratic_kappa(y, pred),
        "accuracy": float((pred == y).mean()),
        "macro_f1": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": per_class,
        "referable": referable_operating_point(y, referable_scores(p), threshold),
        "n": int(len(y)),
    }


def threshold_for_sensitivity(
    y_true: Sequence[int] | np.ndarray,
    p_referable: Sequence[float] | np.ndarray,
    target: float,
) -> float:
    """The highest threshold whose referable sensitivity reaches ``target`` on these cases.

    Pick it on the validation split and apply it to the test split. Raises ValueError when
    there is no referable case to compute a sensitivity from.
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target sensitivity must be in (0, 1], got {target}")
    truth = _as_grades(y_true) >= REFERABLE_MIN_GRADE
    scores = np.asarray(p_referable, dtype=np.float64).reshape(-1)
    positive_scores = np.sort(scores[truth])[::-1]
    if positive_scores.size == 0:
        raise ValueError("no referable case: cannot choose a threshold for a sensitivity")
    # Flag p >= t: to catch k positives, t must be <= the k-th highest positive score.
    k = max(1, math.ceil(target * positive_scores.size - 1e-9))
    return float(positive_scores[k - 1])


def expected_calibration_error(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    bins: int = 15,
) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over confidence bins."""
    y = _as_grades(y_true)
    p = _as_probabilities(probabilities, len(y))
    confidence, correct = p.max(axis=1), p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def referable_brier(
    y_true: Sequence[int] | np.ndarray, probabilities: Sequence[Sequence[float]] | np.ndarray
) -> float:
    """Brier score of the referable probability against referable truth (lower is better): a
    proper score of the probability the referral decision uses, smooth on a few hundred cases
    where a binned ECE is noise."""
    y = _as_grades(y_true)
    p = _as_probabilities(probabilities, len(y))
    truth = (y >= REFERABLE_MIN_GRADE).astype(np.float64)
    return float(np.mean((referable_scores(p) - truth) ** 2))


def bootstrap_intervals(
    y_true: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    *,
    threshold: float,
    groups: Sequence[str] | None = None,
    n: int = 1000,
    seed: int = 0,
    grade_rule: str = "most-probable",
) -> dict[str, list[float]]:
    """95 % percentile-bootstrap intervals of QWK, referable AUC, sensitivity and specificity.

    ``groups`` (patient ids) resamples patients rather than photos, since both eyes of a
    patient are not independent cases.
    """
    y = _as_grades(y_true)
    p = _as_probabilities(probabilities, len(y))
    pred, scores = predicted_grades(p, grade_rule), referable_scores(p)
    ids = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str))
    unique, index = np.unique(ids, return_inverse=True)
    members = [np.flatnonzero(index == k) for k in range(len(unique))]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"qwk": [], "auc": [], "sensitivity": [], "specificity": []}
    for _ in range(n):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(unique), len(unique))])
        point = referable_operating_point(y[rows], scores[rows], threshold)
        draws["qwk"].append(quadratic_kappa(y[rows], pred[rows]))
        for key in ("auc", "sensitivity", "specificity"):
            if point[key] is not None:
                draws[key].append(point[key])
    return {
        key: [float(v) for v in np.percentile(values, (2.5, 97.5))]
        for key, values in draws.items()
        if values
    }


# -- figures -------------------------------------------------------------------------------


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(cm: Sequence[Sequence[int]] | np.ndarray, path: str | Path) -> Path:
    """Save the confusion matrix (rows = truth, columns = prediction) as an image."""
    plt = _pyplot()
    matrix = np.asarray(cm, dtype=int)
    row_totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(
                j,
                i,
                str(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
            )
    ticks = [f"{g}\n{LABELS[g]}" for g in GRADES]
    ax.set_xticks(range(N_CLASSES), ticks, fontsize=7)
    ax.set_yticks(range(N_CLASSES), [t.replace("\n", " ") for t in ticks], fontsize=7)
    ax.set_xlabel("predicted grade")
    ax.set_ylabel("true grade")
    ax.set_title("Confusion matrix (colour = share of the true grade)")
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_roc(
    y_true: Sequence[int] | np.ndarray,
    p_referable: Sequence[float] | np.ndarray,
    path: str | Path,
    operating_point: dict[str, Any] | None = None,
) -> Path:
    """Save the referable-DR ROC curve, marking ``operating_point`` (a ``referable`` dict)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    truth = _as_grades(y_true) >= REFERABLE_MIN_GRADE
    scores = np.asarray(p_referable, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    if truth.any() and (~truth).any():
        fpr, tpr, _ = roc_curve(truth, scores)
        ax.plot(fpr, tpr, label=f"AUC = {roc_auc_score(truth, scores):.3f}")
    else:
        ax.text(0.5, 0.5, "ROC undefined: only one class present", ha="center")
    if (
        operating_point
        and operating_point.get("sensitivity") is not None
        and operating_point.get("specificity") is not None
    ):
        ax.plot(
            1 - operating_point["specificity"],
            operating_point["sensitivity"],
            "o",
            color="crimson",
            label=f"threshold {operating_point['threshold']:.2f}",
        )
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title("Referable DR (grade >= 2)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def read_history(history_csv: str | Path) -> dict[str, list[float]]:
    """Columns of a Keras CSVLogger file as float lists (empty cells become NaN)."""
    with open(history_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            try:
                columns.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                columns.setdefault(key, []).append(float("nan"))
    return columns


def plot_curves(history_csv: str | Path, path: str | Path) -> Path:
    """Save training/validation loss and validation QWK per epoch from ``history.csv``."""
    plt = _pyplot()
    history = read_history(history_csv)
    epochs = [e + 1 for e in history.get("epoch", [])]
    fig, (ax_loss, ax_qwk) = plt.subplots(1, 2, figsize=(10, 4))
    panels = ((ax_loss, "loss", "loss", "Loss"), (ax_qwk, "qwk", "quadratic weighted kappa", "QWK"))
    for ax, key, ylabel, title in panels:
        for column, name in ((key, "training"), (f"val_{key}", "validation")):
            if column in history:
                ax.plot(epochs, history[column], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
