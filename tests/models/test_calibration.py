"""Temperature scaling of a saved model's output (site recalibration)."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.grading import predicted_grades
from retinascreen.models.calibration import (
    fit_ordinal_scaling,
    fit_temperature,
    negative_log_likelihood,
    scale_probabilities,
)
from retinascreen.models.metrics import referable_brier
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


def test_ordinal_offset_moves_every_grade_threshold_by_offset_times_temperature():
    scores = np.linspace(-1.0, 5.0, 41)
    model_output = ordinal_probabilities(scores, THRESHOLDS, 0.5).astype(np.float32)
    shifted = scale_probabilities(model_output, 1.5, "ordinal", offset=2.0)
    moved = tuple(t + 2.0 * 0.5 for t in THRESHOLDS)
    np.testing.assert_allclose(shifted, ordinal_probabilities(scores, moved, 0.5 * 1.5), atol=2e-5)
    # Unlike the temperature, the offset lowers the median grade of some eyes.
    change = predicted_grades(shifted, "median") - predicted_grades(model_output, "median")
    assert (change < 0).any() and (change <= 0).all()
    with pytest.raises(ValueError, match="ordinal models only"):
        scale_probabilities(model_output, 1.0, "softmax", offset=1.0)


def test_fitted_offset_undoes_a_camera_that_makes_every_eye_look_worse():
    """A site whose photos all score 0.8 grade higher, and sharpened 2x: a temperature alone
    leaves the shift; temperature and offset together recover the site's own probabilities."""
    rng = np.random.default_rng(2)
    scores = rng.uniform(-0.5, 4.5, 3000)
    truth = ordinal_probabilities(scores, THRESHOLDS, 0.6)
    grades = np.array([rng.choice(5, p=row / row.sum()) for row in truth])
    model = ordinal_probabilities(scores + 0.8, THRESHOLDS, 0.3)
    temperature, offset = fit_ordinal_scaling(grades, model)
    # (s + 0.8 - θ) / 0.3 = 2 (s - θ) / 0.6 + 0.8 / 0.3: temperature 2, offset 2.67
    assert 1.7 < temperature < 2.4 and 2.2 < offset < 3.2
    both = scale_probabilities(model, temperature, "ordinal", offset)
    alone = scale_probabilities(model, fit_temperature(grades, model, "ordinal"), "ordinal")
    assert negative_log_likelihood(grades, both) < negative_log_likelihood(grades, alone) - 0.05
    assert referable_brier(grades, both) < referable_brier(grades, alone) - 0.01
