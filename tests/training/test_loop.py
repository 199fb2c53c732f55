"""Training end to end on a tiny hand-made data set: run files, resume, phases, strategies."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from retinascreen.errors import ConfigError, DatasetError
from retinascreen.training.config import TrainConfig, load_config, to_toml, write_config
from tests.helpers.tiny_fundus import make_tiny_aptos

RUN_FILES = (
    "best.keras",
    "config.toml",
    "history.csv",
    "curves.png",
    "metrics.json",
    "model_card.json",
    "confusion.png",
    "roc.png",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_aptos(tmp_path_factory.mktemp("tiny") / "data", n=30)


def tiny_config(data, out, **changes):
    base = TrainConfig(
        data=str(data),
        format="aptos",
        out=str(out),
        backbone="mini_xception",
        head="gap",
        size=48,
        widths=[8, 16],
        epochs=1,
        batch_size=8,
        val=0.2,
        test=0.2,
        cache_dir=str(data.parent / "cache"),
    )
    return base.replace(**changes)


def history_epochs(run):
    with open(run / "history.csv", newline="") as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def test_config_toml_round_trip(tmp_path):
    config = TrainConfig(
        data="d", out="o", widths=[8, 16], target_sensitivity=0.9, ben_graham=True, lr=3e-4
    )
    path = write_config(config, tmp_path / "config.toml")
    assert load_config(path) == config
    assert "target_sensitivity = 0.9" in to_toml(config)
    bad = tmp_path / "bad.toml"
    bad.write_text('epochs = 2\nbackbone_name = "x"\n')
    with pytest.raises(ConfigError, match="backbone_name"):
        load_config(bad)


def test_bad_data_is_reported_before_any_training(tmp_path, data):
    from retinascreen.training.loop import train

    broken = make_tiny_aptos(tmp_path / "broken", n=10)
    (broken / "train_images" / "img003.png").unlink()
    with pytest.raises(DatasetError, match="img003"):
        train(tiny_config(broken, tmp_path / "run"))
    assert not (tmp_path / "run" / "history.csv").exists()


def test_interrupted_training_resumes_where_it_stopped(tmp_path, data):
    import keras

    from retinascreen.training.loop import train

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    run = tmp_path / "run"
    config = tiny_config(data, run, epochs=2, head="wise-srnet")
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[Interrupt()])
    assert history_epochs(run) == [0]
    assert json.loads((run / "state.json").read_text())["epoch"] == 1
    assert not (run / "metrics.json").exists()

    with pytest.raises(ConfigError, match="head"):
        train(config.replace(head="gap"))

    train(config)
    assert history_epochs(run) == [0, 1]
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["n"] == np.sum(metrics["confusion_matrix"]) > 0
    assert len(metrics["confusion_matrix"]) == 5
    low, high = metrics["intervals"]["qwk"]
    assert low <= metrics["qwk"] <= high
    assert 0 <= metrics["calibration"]["ece"] <= 1 and metrics["val"]["n"] > 0
    card = json.loads((run / "model_card.json").read_text())
    assert card["metrics"]["intervals"] == metrics["intervals"]
    assert card["backbone"] == "mini_xception" and card["head"] == "wise-srnet"
    assert card["metrics"]["qwk"] == metrics["qwk"]
    from retinascreen.models.modelcard import read_card

    assert read_card(run / "best.keras").head == "wise-srnet"


def test_ordinal_fine_tuning_keeps_batchnorm_frozen_and_saves_probabilities(tmp_path, data):
    import keras

    from retinascreen.models.engines import load_keras_model
    from retinascreen.training.loop import train

    start = train(tiny_config(data, tmp_path / "start"))
    run = tmp_path / "ordinal"
    train(
        tiny_config(
            data,
            run,
            weights=str(start / "best.keras"),
            objective="ordinal",
            fine_tune_epochs=1,
            unfreeze_top=6,
            head="wise-srnet",
        )
    )
    state = json.loads((run / "state.json").read_text())
    assert [p["name"] for p in state["phases"]] == ["head", "finetune"]
    assert history_epochs(run) == [0, 1]

    tuned = keras.saving.load_model(run / "last.keras", compile=False)
    norms = [la for la in tuned.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert norms and not any(la.trainable for la in norms)
    assert any(
        la.trainable and la.weights
        for la in tuned.layers
        if "conv" in la.name and not isinstance(la, keras.layers.BatchNormalization)
    )

    model = load_keras_model(run / "best.keras")
    probs = model.predict(np.full((2, 48, 48, 3), 120, "float32"), verbose=0)
    assert probs.shape == (2, 5)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    card = json.loads((run / "model_card.json").read_text())
    assert card["objective"] == "ordinal" and len(card["thresholds"]) == 4
    assert card["thresholds"] == sorted(card["thresholds"])


def test_mirrored_strategy_trains_on_cpu(tmp_path, data):
    from retinascreen.training.loop import train

    run = train(tiny_config(data, tmp_path / "mirrored", distribute="mirrored", size=32))
    assert history_epochs(run) == [0]
    assert (run / "metrics.json").is_file()


def test_mixed_precision_model_outputs_float32():
    import keras

    from retinascreen.training.loop import _build

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        for objective in ("softmax", "ordinal"):
            config = TrainConfig(
                backbone="mini_xception",
                head="wise-srnet",
                size=32,
                widths=[8],
                weights="none",
                objective=objective,
            )
            model = _build(config, mean_grade=1.0)
            assert any(la.compute_dtype == "float16" for la in model.layers)
            out = model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
            assert out.dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_model_card_calls_synthetic_data_synthetic(tmp_path):
    from retinascreen.training.data import describe_training_data

    (tmp_path / "manifest.json").write_text(
        json.dumps({"name": "synthetic-dr-v1", "generator": "retinascreen.synthetic"})
    )
    text, synthetic = describe_training_data(TrainConfig(data=str(tmp_path)), 200)
    assert synthetic and text.startswith("synthetic-dr-v1 (synthetic images, not clinical)")
    (tmp_path / "manifest.json").unlink()
    text, synthetic = describe_training_data(TrainConfig(data=str(tmp_path)), 200)
    assert not synthetic and "synthetic" not in text


def test_imagenet_lite_head_on_cached_features_then_fine_tuning(tmp_path, data, monkeypatch):
    """Phase 1 from cached feature maps (one backbone pass per photo), then fine-tuning."""
    from retinascreen.models.engines import load_keras_model
    from retinascreen.training.loop import train

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    run = tmp_path / "lite"
    config = tiny_config(
        data,
        run,
        backbone="efficientnet_lite0",
        weights="imagenet",
        head="gap",
        size=64,
        epochs=8,
        head_on_features=True,
        fine_tune_epochs=1,
        unfreeze_top=20,
        equalize=True,
        objective="ordinal",
    )
    config.widths = None  # (replace() ignores None)
    train(config)
    state = json.loads((run / "state.json").read_text())
    assert [p["name"] for p in state["phases"]] == ["head", "finetune"]
    assert history_epochs(run) == [0, 1]  # the cached head counts as one epoch
    card = json.loads((run / "model_card.json").read_text())
    assert card["backbone"] == "efficientnet_lite0"
    assert card["preprocessing"]["equalize"] is True
    probs = load_keras_model(run / "best.keras").predict(
        np.full((1, 64, 64, 3), 120, "float32"), verbose=0
    )
    assert probs.shape == (1, 5)


def test_continued_run_adds_camera_versions_and_keeps_its_last_epoch(tmp_path, data):
    import keras

    from retinascreen.training.loop import train

    run = tmp_path / "run"
    config = tiny_config(data, run, epochs=2, patience=0)
    train(config)
    lines: list[str] = []
    train(config.replace(epochs=3, camera_variants=1, keep="last"), log=lines.append)
    assert history_epochs(run) == [0, 1, 2]  # continued, not refused nor restarted
    assert "keeping the model of the last epoch (3)" in lines
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["kept_epoch"] == 3
    assert sorted((data.parent / "cache").rglob("camera/*.png"))  # the versions were made
    best = keras.saving.load_model(run / "best.keras", compile=False)
    last = keras.saving.load_model(run / "last.keras", compile=False)
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    np.testing.assert_allclose(best.predict(x, verbose=0), last.predict(x, verbose=0), atol=1e-5)


def test_keep_must_be_best_or_last(tmp_path, data):
    with pytest.raises(ConfigError, match="keep"):
        tiny_config(data, tmp_path / "run", keep="median").validate()
