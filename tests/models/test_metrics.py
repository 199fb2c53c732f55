"""Screening metrics against small cases worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retinascreen.models.metrics import (
    compute_metrics,
    plot_confusion,
    plot_curves,
    plot_roc,
    threshold_for_sensitivity,
)


def one_hot(grades, confidence=0.9):
    p = np.full((len(grades), 5), (1 - confidence) / 4)
    p[np.arange(len(grades)), grades] = confidence
    return p


def test_qwk_matches_the_formula_worked_by_hand():
    # truth 0,1,2,4 vs prediction 0,2,2,3: weighted observed disagreement 2, expected 54/4
    # (weights (i-j)^2; histograms truth {0,1,2,4}, prediction {0,2,2,3}) -> 1 - 8/54.
    metrics = compute_metrics([0, 1, 2, 4], one_hot([0, 2, 2, 3]))
    assert metrics["qwk"] == pytest.approx(1 - 8 / 54)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["n"] == 4


def test_confusion_matrix_rows_are_truth_and_always_5x5():
    metrics = compute_metrics([0, 0, 3], one_hot([0, 4, 3]))
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (5, 5)
    assert cm[0, 4] == 1  # a true grade 0 predicted as grade 4
    assert cm[4, 0] == 0
    assert cm[0, 0] == 1 and cm[3, 3] == 1
    assert metrics["per_class"]["0"]["support"] == 2
    assert metrics["per_class"]["0"]["recall"] == pytest.approx(0.5)
    assert metrics["per_class"]["4"]["precision"] == pytest.approx(0.0)
    assert metrics["per_class"]["2"]["label"] == "Moderate NPDR"


def test_referable_sensitivity_specificity_and_threshold():
    truth = [0, 1, 2, 3, 4, 0]
    # referable probability = p2 + p3 + p4
    p_ref = np.array([0.1, 0.6, 0.8, 0.4, 0.9, 0.2])
    probs = np.zeros((6, 5))
    probs[:, 0] = 1 - p_ref
    probs[:, 2] = p_ref
    default = compute_metrics(truth, probs)["referable"]
    assert default["threshold"] == 0.5
    assert default["sensitivity"] == pytest.approx(2 / 3)  # grade 3 at 0.4 is missed
    assert default["specificity"] == pytest.approx(2 / 3)  # grade 1 at 0.6 is flagged
    # positives 0.8, 0.4, 0.9 vs negatives 0.1, 0.6, 0.2: 8 of 9 pairs ordered
    assert default["auc"] == pytest.approx(8 / 9)
    lower = compute_metrics(truth, probs, referable_threshold=0.35)["referable"]
    assert lower["sensitivity"] == pytest.approx(1.0)
    assert threshold_for_sensitivity(truth, p_ref, 1.0) == pytest.approx(0.4)
    assert threshold_for_sensitivity(truth, p_ref, 0.6) == pytest.approx(0.8)


def test_one_class_makes_auc_null_with_a_note_and_json_serialisable():
    metrics = compute_metrics([0, 0, 1], one_hot([0, 1, 1]))
    assert metrics["referable"]["auc"] is None
    assert "undefined" in metrics["referable"]["note"]
    assert metrics["referable"]["sensitivity"] is None
    json.dumps(metrics)  # no NaN, no numpy types
    assert "nan" not in json.dumps(metrics).lower()


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        compute_metrics([0, 1], np.ones((2, 4)) / 4)
    with pytest.raises(ValueError):
        compute_metrics([0, 7], one_hot([0, 1]))


def test_plots_write_png_files(tmp_path):
    truth = [0, 1, 2, 3, 4, 2]
    probs = one_hot([0, 1, 2, 2, 4, 1])
    metrics = compute_metrics(truth, probs)
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,qwk,val_loss,val_qwk\n0,1.5,0.1,1.4,0.2\n1,1.2,0.3,1.3,0.35\n")
    for path in (
        plot_confusion(metrics["confusion_matrix"], tmp_path / "confusion.png"),
        plot_roc(truth, probs[:, 2:].sum(1), tmp_path / "roc.png", metrics["referable"]),
        plot_curves(history, tmp_path / "curves.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_calibration_error_is_zero_when_confidence_matches_accuracy_and_large_when_not():
    from retinascreen.models.metrics import expected_calibration_error

    y = np.array([0] * 8 + [1] * 2)
    honest = np.tile([0.8, 0.2, 0.0, 0.0, 0.0], (10, 1))  # 80 % sure, right 8 times in 10
    assert expected_calibration_error(y, honest) == pytest.approx(0.0)
    overconfident = np.tile([1.0, 0.0, 0.0, 0.0, 0.0], (10, 1))
    assert expected_calibration_error(y, overconfident) == pytest.approx(0.2)


def test_bootstrap_intervals_contain_the_estimate_and_narrow_with_more_cases():
    from retinascreen.models.metrics import bootstrap_intervals, compute_metrics

    rng = np.random.default_rng(0)

    def cases(n):
        y = rng.integers(0, 5, n)
        noisy = np.clip(y + rng.normal(0, 0.8, n), 0, 4).round().astype(int)
        return y, np.eye(5)[noisy] * 0.9 + 0.02

    y, p = cases(200)
    ci = bootstrap_intervals(y, p, threshold=0.5, n=200)
    point = compute_metrics(y, p, referable_threshold=0.5)
    assert ci["qwk"][0] <= point["qwk"] <= ci["qwk"][1]
    assert ci["auc"][0] <= point["referable"]["auc"] <= ci["auc"][1]
    y_big, p_big = cases(2000)
    wide = ci["qwk"][1] - ci["qwk"][0]
    narrow = np.subtract(*bootstrap_intervals(y_big, p_big, threshold=0.5, n=200)["qwk"][::-1])
    assert narrow < wide


def test_bootstrap_over_patients_keeps_both_eyes_together():
    from retinascreen.models.metrics import bootstrap_intervals

    y = np.array([0, 0, 3, 3, 0, 2])
    p = np.eye(5)[[0, 0, 3, 3, 1, 2]]
    # Two patients whose eyes agree perfectly: every resample is perfect.
    ci = bootstrap_intervals(y[:4], p[:4], threshold=0.5, groups=["a", "a", "b", "b"], n=50)
    assert ci["sensitivity"] == [1.0, 1.0] and ci["specificity"] == [1.0, 1.0]
