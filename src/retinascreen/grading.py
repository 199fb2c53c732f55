"""The ICDR vocabulary every module imports: grades, labels and the referable rule."""

from __future__ import annotations

from collections.abc import Sequence

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
