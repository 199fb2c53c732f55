"""The ICDR vocabulary every module imports: grades, labels and the referable rule."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

GRADES: tuple[int, ...] = (0, 1, 2, 3, 4)
LABELS: tuple[str, ...] = (
    "No DR",
    "Mild NPDR",
    "Moderate NPDR",
    "Severe NPDR",
    "Proliferative DR",
)
N_CLASSES = len(GRADES)
REFERABLE_MIN_GRADE = 2
"""Referable DR = grade >= 2, the definition used by the large screening studies."""


def check_grade(grade: int) -> int:
    """Return ``grade`` as an int, or raise ValueError when it is not an ICDR grade."""
    g = int(grade)
    if g not in GRADES or g != grade:
        raise ValueError(f"{grade!r} is not an ICDR grade (expected 0..4)")
    return g


def label(grade: int) -> str:
    """The ICDR label of a grade, e.g. ``label(2) == "Moderate NPDR"``."""
    return LABELS[check_grade(grade)]


def is_referable(grade: int) -> bool:
    """Whether an eye of this grade must be referred to an ophthalmologist."""
    return check_grade(grade) >= REFERABLE_MIN_GRADE


def referable_probability(probabilities: Sequence[float]) -> float:
    """Probability mass on the referable grades (2, 3 and 4)."""
    if len(probabilities) != N_CLASSES:
        raise ValueError(f"expected {N_CLASSES} probabilities, got {len(probabilities)}")
    return float(sum(probabilities[REFERABLE_MIN_GRADE:]))


GRADE_RULES = ("most-probable", "median")
"""How a model's five probabilities become one grade (its model card's objective decides)."""


def predicted_grades(
    probabilities: Sequence[Sequence[float]] | np.ndarray, rule: str
) -> np.ndarray:
    """The grade of each row: the most probable, or the median of the distribution.

    Regression ("ordinal") models use the median: it is the number of tuned thresholds the
    score passes (P(grade >= k) >= 0.5 exactly when the score exceeds threshold k), so the
    grade does not depend on the temperature that calibrates the probabilities.
    """
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, N_CLASSES)
    if rule == "most-probable":
        return p.argmax(axis=1)
    if rule != "median":
        raise ValueError(f"unknown grade rule {rule!r}; choose one of {', '.join(GRADE_RULES)}")
    at_least = 1.0 - np.cumsum(p, axis=1)[:, :-1]  # P(grade >= k) for k = 1..4
    return (at_least >= 0.5 - 1e-9).sum(axis=1)


def grade_rule(objective: str | None) -> str:
    """The grade rule of a model trained with ``objective`` (``ordinal``: the median)."""
    return "median" if objective == "ordinal" else "most-probable"
