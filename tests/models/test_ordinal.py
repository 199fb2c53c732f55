"""The regression objective: thresholds tuned for QWK and the saved probability layer."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.models import ordinal
from retinascreen.models.metrics import quadratic_kappa


def shifted_case(seed=0, n=400):
    rng = np.random.default_rng(seed)
    grades = rng.integers(0, 5, n)
    # a model that systematically under-calls by 0.8 of a grade, with a little noise
    scores = grades - 0.8 + rng.normal(0, 0.15, n)
    return grades, scores


def test_tuned_thresholds_recover_qwk_lost_to_a_systematic_shift():
    grades, scores = shifted_case()
    default_qwk = quadratic_kappa(grades, ordinal.scores_to_grades(scores))
    tuned = ordinal.optimise_thresholds(grades, scores)
    tuned_qwk = quadratic_kappa(grades, ordinal.scores_to_grades(scores, tuned))
    assert tuned_qwk > default_qwk + 0.05
    assert tuned_qwk > 0.97
    assert list(tuned) == sorted(tuned)
    # the thresholds moved down by about the shift
    assert np.mean(np.array(tuned) - np.array(ordinal.DEFAULT_THRESHOLDS)) < -0.5


def test_probabilities_sum_to_one_and_argmax_is_the_grade():
    scores = np.array([-1.0, 0.2, 1.0, 2.1, 3.0, 5.0])
    p = ordinal.ordinal_probabilities(scores, temperature=0.1)
    assert p.shape == (6, 5)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert p.argmax(axis=1).tolist() == [0, 0, 1, 2, 3, 4]
    # referable probability telescopes to P(grade >= 2) = sigmoid((y - t2) / T)
    expected = 1 / (1 + np.exp(-(scores - 1.5) / 0.1))
    assert np.allclose(p[:, 2:].sum(axis=1), expected)


def test_fitted_temperature_is_smaller_for_sharper_scores():
    rng = np.random.default_rng(1)
    grades = rng.integers(0, 5, 300)
    sharp = ordinal.fit_temperature(
        grades, grades + rng.normal(0, 0.05, 300), ordinal.DEFAULT_THRESHOLDS
    )
    noisy = ordinal.fit_temperature(
        grades, grades + rng.normal(0, 0.6, 300), ordinal.DEFAULT_THRESHOLDS
    )
    assert sharp < noisy


def test_fitted_temperature_makes_the_shown_confidence_match_accuracy():
    from retinascreen.models.metrics import expected_calibration_error

    rng = np.random.default_rng(2)
    grades = rng.integers(0, 5, 600)
    scores = grades + rng.normal(0, 0.45, 600)
    t = ordinal.DEFAULT_THRESHOLDS
    fitted = ordinal.fit_temperature(grades, scores, t)

    def error(temperature: float) -> float:
        return expected_calibration_error(
            grades, ordinal.ordinal_probabilities(scores, t, temperature)
        )

    assert error(fitted) <= error(ordinal.DEFAULT_TEMPERATURE)
    assert error(fitted) < 0.05  # confidence within 5 points of accuracy on these cases


def test_saved_model_outputs_five_probabilities_and_round_trips(tmp_path):
    import keras

    inputs = keras.Input((3,))
    score = keras.layers.Dense(1, name="score")(inputs)
    regression = keras.Model(inputs, score)
    model = ordinal.with_probabilities(regression, (0.4, 1.4, 2.4, 3.4), 0.3)
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    p = loaded.predict(x, verbose=0)
    assert p.shape == (4, 5)
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-5)
    thresholds, temperature = ordinal.ordinal_settings(loaded)
    assert thresholds == pytest.approx((0.4, 1.4, 2.4, 3.4))
    assert temperature == pytest.approx(0.3)
    raw = ordinal.scores_model(loaded).predict(x, verbose=0).reshape(-1)
    assert np.allclose(p, ordinal.ordinal_probabilities(raw, (0.4, 1.4, 2.4, 3.4), 0.3), atol=1e-5)
    assert ordinal.ordinal_settings(regression) is None
