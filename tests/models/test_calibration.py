"""Temperature scaling of a saved model's output (site recalibration)."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.grading import predicted_grades
from retinascreen.models.calibration import (
    fit_temperature,
    negative_log_likelihood,
    scale_probabilities,
)
from retinascreen.models.ordinal import ordinal_probabilities

THRESHOLDS = (0.5, 1.4, 2.6, 3.5)


def test_ordinal_scaling_is_the_ordinal_layer_at_a_multiplied_temperature():
    scores = np.linspace(-1.0, 5.0, 41)
    model_output = ordinal_probabilities(scores, THRESHOLDS, 0.5).astype(np.float32)
    for t in (0.6, 1.7):
        scaled = scale_probabilities(model_output, t, "ordinal")
        np.testing.assert_allclose(
            scaled, ordinal_probabilities(scores, THRESHOLDS, 0.5 * t), atol=2e-5
        )
        # The median grade (the number of thresholds passed) does not move.
        assert (
            predicted_grades(scaled, "median") == predicted_grades(model_output, "median")
        ).all()


def test_softmax_scaling_keeps_the_most_probable_grade_and_sums_to_one():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 5)) * 2
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for t in (0.5, 3.0):
        scaled = scale_probabilities(p, t)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
        assert (scaled.argmax(axis=1) == p.argmax(axis=1)).all()
        expected = np.exp(logits / t) / np.exp(logits / t).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(scaled, expected, atol=1e-9)
    np.testing.assert_array_equal(scale_probabilities(p, 1.0), p)
    with pytest.raises(ValueError, match="positive"):
        scale_probabilities(p, 0.0)


@pytest.mark.parametrize("objective", ["softmax", "ordinal"])
def test_fitted_temperature_undoes_an_overconfident_model(objective):
    """Grades drawn from calibrated probabilities; the model reports them sharpened 2.5x."""
    rng = np.random.default_rng(1)
    n = 4000
    if objective == "ordinal":
        scores = rng.uniform(-0.5, 4.5, n)
        truth = ordinal_probabilities(scores, THRESHOLDS, 0.6)
        overconfident = ordinal_probabilities(scores, THRESHOLDS, 0.6 / 2.5)
    else:
        logits = rng.normal(size=(n, 5)) * 1.5
        truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        overconfident = np.exp(2.5 * logits) / np.exp(2.5 * logits).sum(axis=1, keepdims=True)
    grades = np.array([rng.choice(5, p=row / row.sum()) for row in truth])
    t = fit_temperature(grades, overconfident, objective)
    assert 2.1 < t < 2.9
    fitted = scale_probabilities(overconfident, t, objective)
    assert negative_log_likelihood(grades, fitted) < negative_log_likelihood(grades, overconfident)
