"""A regression ("ordinal") model's card temperature, applied by the Predictor for both engines."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.models import ordinal
from retinascreen.models.modelcard import ModelCard, write_card
from retinascreen.serving.export import export_model
from retinascreen.serving.predictor import Predictor

THRESHOLDS = (0.4, 1.4, 2.4, 3.4)
LAYER_TEMPERATURE = 0.3
SIZE = 32


def ordinal_card(**extra: float) -> ModelCard:
    """The card of a regression model with the test's grade thresholds."""
    return ModelCard(
        name="ordinal",
        backbone="test",
        head="test",
        input_size=SIZE,
        objective="ordinal",
        thresholds=list(THRESHOLDS),
        extra=dict(extra),
    )


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 64)(inputs))
    score = keras.layers.Dense(1, name="score")(pooled)
    regression = keras.Model(inputs, score)
    model = ordinal.with_probabilities(regression, THRESHOLDS, LAYER_TEMPERATURE)
    root = tmp_path_factory.mktemp("ordinal")
    path = root / "ordinal.keras"
    model.save(path)
    card = ordinal_card(temperature=LAYER_TEMPERATURE, output_temperature=2.5)
    write_card(path, card)
    export_model(path, root / "ordinal.onnx")
    pixels = np.random.default_rng(1).uniform(0, 255, (8, SIZE, SIZE, 3)).astype("float32")
    scores = regression.predict(pixels, verbose=0).reshape(-1)
    return {"keras": path, "onnx": root / "ordinal.onnx", "pixels": pixels, "scores": scores}


@pytest.mark.parametrize("kind", ["keras", "onnx"])
def test_output_temperature_multiplies_the_ordinal_layers_temperature(models, kind):
    predictor = Predictor(models[kind])
    assert predictor.engine == kind and predictor.output_temperature == 2.5
    expected = ordinal.ordinal_probabilities(models["scores"], THRESHOLDS, LAYER_TEMPERATURE * 2.5)
    np.testing.assert_allclose(predictor.predict_arrays(models["pixels"]), expected, atol=1e-4)
    raw = ordinal.ordinal_probabilities(models["scores"], THRESHOLDS, LAYER_TEMPERATURE)
    np.testing.assert_allclose(
        predictor.predict_arrays(models["pixels"], calibrated=False), raw, atol=1e-4
    )
    assert np.abs(expected - raw).max() > 0.05  # the temperature does change the output


def test_an_invalid_card_temperature_is_a_clear_model_error(models, tmp_path):
    from retinascreen.errors import ModelError
    from retinascreen.models.modelcard import read_card

    path = tmp_path / "bad.keras"
    path.write_bytes(models["keras"].read_bytes())
    card = read_card(path)
    card.extra["output_temperature"] = -1
    write_card(path, card)
    with pytest.raises(ModelError, match="output_temperature must be > 0"):
        Predictor(path)


@pytest.mark.parametrize("kind", ["keras", "onnx"])
def test_output_offset_moves_the_ordinal_thresholds(models, kind, tmp_path):
    from retinascreen.models.modelcard import read_card

    path = tmp_path / f"offset.{kind}"
    path.write_bytes(models[kind].read_bytes())
    card = read_card(models[kind])
    card.extra["output_offset"] = 1.5
    write_card(path, card)
    predictor = Predictor(path)
    assert predictor.output_offset == 1.5
    moved = tuple(t + 1.5 * LAYER_TEMPERATURE for t in THRESHOLDS)
    expected = ordinal.ordinal_probabilities(models["scores"], moved, LAYER_TEMPERATURE * 2.5)
    np.testing.assert_allclose(predictor.predict_arrays(models["pixels"]), expected, atol=1e-4)


def test_an_offset_on_a_softmax_card_is_a_clear_model_error(models, tmp_path):
    from retinascreen.errors import ModelError
    from retinascreen.models.modelcard import read_card

    path = tmp_path / "softmax.keras"
    path.write_bytes(models["keras"].read_bytes())
    card = read_card(path)
    card.objective = "softmax"
    card.extra["output_offset"] = 1.0
    write_card(path, card)
    with pytest.raises(ModelError, match="output_offset must be a finite number on an ordinal"):
        Predictor(path)


def test_site_calibration_of_an_ordinal_model_fits_an_offset_and_records_it():
    """A site whose photos the model grades 0.8 of a grade too high: the recalibrated
    probabilities agree better with the site's graders, the referral ranking is unchanged."""
    from retinascreen.serving.calibration import SiteSample, calibrated_card, fit_site

    rng = np.random.default_rng(3)
    scores = rng.uniform(-0.5, 4.5, 400)
    truth = ordinal.ordinal_probabilities(scores, THRESHOLDS, 0.6)
    grades = np.array([rng.choice(5, p=row / row.sum()) for row in truth])
    model = ordinal.ordinal_probabilities(scores + 0.8, THRESHOLDS, 0.6)
    patients = [f"P{i // 2}" for i in range(len(grades))]
    card = ordinal_card(referable_threshold=0.1)
    record = fit_site(
        SiteSample(grades, model, patients, len(grades)), card, site="S", resamples=50
    )
    before, after = record["before"], record["after"]
    assert record["offset"] == after["offset"] > 0.5 and before["offset"] == 0.0
    assert after["referable_brier"] < before["referable_brier"] - 0.02
    assert after["qwk"] > before["qwk"] and after["auc"] == pytest.approx(before["auc"])
    assert after["sensitivity"] >= 0.9
    new = calibrated_card(card, None, record)  # the predictor is only read without a card
    assert new.extra["output_offset"] == record["offset"]
