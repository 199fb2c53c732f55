"""The bundled demo model: present, honest about its synthetic training, and it works.

These tests run the shipped files in ``src/retinascreen/demo_model/`` (trained by
``make demo-model`` on synthetic-dr-v1), on synthetic photographs the model never saw
(seeds outside the benchmark's) and on a real photograph.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from retinascreen.data.fundus import find_disc
from retinascreen.models.engines import DEMO_DIR
from retinascreen.models.modelcard import read_card
from retinascreen.serving.predictor import FUNDUS_LEVEL, Predictor
from retinascreen.synthetic import generate

UNSEEN_SEEDS = range(9_000_000, 9_000_030)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor()


def test_demo_model_ships_as_keras_and_onnx_and_says_it_is_synthetic(predictor):
    assert predictor.model_path.parent == DEMO_DIR
    for name in ("demo.keras", "demo.onnx"):
        card = read_card(DEMO_DIR / name)
        assert card.synthetic is True
        assert "not for clinical use" in card.intended_use.lower()
        assert "synthetic" in card.training_data.lower()
        assert (card.backbone, card.head) == ("mini_xception", "wise-srnet")
    result = predictor.predict(generate(1, 0, size=256).image)
    assert result.model.name == "retinascreen-demo"
    assert result.model.sha256


def test_demo_model_grades_unseen_synthetic_photos_far_better_than_chance(predictor):
    samples = [generate(seed, seed % 5, size=384) for seed in UNSEEN_SEEDS]
    results = predictor.predict_batch([s.image for s in samples])
    truth = [s.grade for s in samples]
    graded = [r.grade for r in results]
    qwk = cohen_kappa_score(truth, graded, weights="quadratic")
    assert qwk > 0.6, (truth, graded)
    referable = np.mean([r.referable == (t >= 2) for r, t in zip(results, truth, strict=True)])
    assert referable >= 0.8


def _crop_like_the_model(image: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    from retinascreen.data.fundus import crop_fundus

    disc = find_disc(image)
    layers = np.repeat(mask.astype(np.uint8)[..., None] * 255, 3, axis=2)
    return crop_fundus(layers, size, disc=disc)[..., 0] > 127


def test_demo_model_heat_map_falls_on_the_lesions(predictor):
    """The referable-DR heat map's mass on lesion pixels against their share of the fundus.

    Measured on these seeds: median about 3x chance (each photo between 1.6x and 10x).
    """
    from retinascreen.serving.explain import grad_cam

    model = predictor._cam_model()
    size = predictor.input_size
    ratios = []
    for seed in UNSEEN_SEEDS[:10]:
        sample = generate(seed, 2 + seed % 3, size=512)
        lesions = np.zeros(sample.image.shape[:2], bool)
        for mask in sample.masks.values():
            lesions |= mask
        x = predictor.preprocess(sample.image)
        fundus = x.max(axis=2) > FUNDUS_LEVEL
        lesion = _crop_like_the_model(sample.image, lesions, size)
        lesion = cv2.dilate(lesion.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        lesion &= fundus
        cam = grad_cam(model, x[None].astype(np.float32), target="referable")
        share = cam[lesion].sum() / max(cam[fundus].sum(), 1e-9)
        ratios.append(share / (lesion.sum() / fundus.sum()))
    assert np.median(ratios) > 2.0, ratios
    assert min(ratios) > 1.0, ratios


def test_demo_model_heat_map_overlay_is_cleared_outside_the_fundus(predictor):
    from retinascreen.serving.explain import overlay

    sample = generate(UNSEEN_SEEDS[0], 3, size=512)
    x = predictor.preprocess(sample.image)
    shown = predictor.heatmap(sample.image)
    cold = overlay(x, np.zeros(x.shape[:2], np.float32))
    outside = x.max(axis=2) <= FUNDUS_LEVEL
    assert outside.any() and shown.shape == x.shape
    np.testing.assert_array_equal(shown[outside], cold[outside])
    assert np.abs(shown[~outside].astype(int) - cold[~outside]).max() > 50  # hot spots inside


def test_demo_model_heat_map_stays_cool_on_a_healthy_real_photo(predictor):
    """On a real healthy retina the model finds no referable evidence, and the map shows none."""
    from retinascreen.serving.explain import overlay

    skdata = pytest.importorskip("skimage.data")
    photo = skdata.retina()
    assert predictor.predict(photo).referable is False
    x = predictor.preprocess(photo)
    cold = overlay(x, np.zeros(x.shape[:2], np.float32))
    assert np.abs(predictor.heatmap(photo).astype(int) - cold).max() < 20
