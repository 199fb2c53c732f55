"""Predictor: every model format, the SPEC result, Keras/ONNX parity, bad input, cards, threads."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import zipfile

import numpy as np
import pytest

from retinascreen import errors, grading
from retinascreen.data.images import load_image
from retinascreen.models import engines
from retinascreen.models.engines import resolve_model_path
from retinascreen.models.modelcard import KERAS_ENTRY, ONNX_KEY, file_sha256, read_card, write_card
from retinascreen.result import SYNTHETIC_WARNING, Prediction, PredictionError, PreparedImage
from retinascreen.serving.predictor import Predictor
from tests.helpers.models import (
    SIZE,
    make_model,
    save_model,
    write_bad_files,
    write_face,
    write_photos,
)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from retinascreen.serving.export import keras_to_onnx

    root = tmp_path_factory.mktemp("models")
    model = make_model(seed=1)
    keras_path = save_model(model, root / "tiny.keras")
    onnx_path = keras_to_onnx(model, root / "tiny.onnx")
    write_card(onnx_path, read_card(keras_path))
    run_dir = root / "run"
    run_dir.mkdir()
    shutil.copy(keras_path, run_dir / "best.keras")
    photos = write_photos(root / "photos", 6)
    return {"keras": keras_path, "onnx": onnx_path, "run": run_dir, "photos": photos, "root": root}


@pytest.fixture(scope="module")
def keras_predictor(models):
    return Predictor(models["keras"])


def test_result_is_the_spec_dict(models, keras_predictor):
    prediction = keras_predictor.predict(models["photos"][0])
    assert isinstance(prediction, Prediction)
    assert prediction.path == str(models["photos"][0])
    result = prediction.to_dict()
    assert list(result) == [
        "grade",
        "label",
        "probabilities",
        "referable",
        "referable_probability",
        "gradable",
        "quality",
        "model",
        "referral_rule",
        "referral_note",
        "synthetic",
        "warning",
    ]
    probs = result["probabilities"]
    assert len(probs) == 5 and all(isinstance(p, float) for p in probs)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert result["grade"] == int(np.argmax(probs))
    assert result["label"] == grading.LABELS[result["grade"]]
    assert result["referable"] == (result["grade"] >= 2)
    assert result["referable_probability"] == pytest.approx(sum(probs[2:]))
    assert result["gradable"] is True and result["quality"]["reasons"] == []
    assert 0.5 <= result["quality"]["score"] <= 1
    assert result["model"] == {
        "name": "tiny",
        "version": "0.1",
        "sha256": file_sha256(models["keras"]),
    }
    assert result["synthetic"] is True and result["warning"] == SYNTHETIC_WARNING
    assert list(result["quality"]) == ["score", "reasons", "measures", "label"]
    assert result["quality"]["label"] in ("good", "usable")
    assert result["grade"] == prediction.grade and result["gradable"] is prediction.gradable
    assert Prediction.from_dict(json.loads(json.dumps(result))) == prediction
    assert keras_predictor.model_path == models["keras"]
    assert keras_predictor.card.input_size == SIZE


def test_path_bytes_and_array_give_the_same_result(models, keras_predictor):
    path = models["photos"][1]
    by_path = keras_predictor.predict(path)
    by_bytes = keras_predictor.predict(path.read_bytes())
    by_array = keras_predictor.predict(load_image(path))
    assert by_path == by_bytes == by_array  # the path is provenance, not part of the result
    assert by_path.to_dict() == by_bytes.to_dict() == by_array.to_dict()
    assert by_bytes.path is None


def test_keras_and_onnx_agree_within_1e4(models, keras_predictor):
    onnx_predictor = Predictor(models["onnx"])
    assert onnx_predictor.engine == "onnx"
    a = keras_predictor.predict_batch(models["photos"])
    b = onnx_predictor.predict_batch(models["photos"])
    pa = np.array([r.probabilities for r in a])
    pb = np.array([r.probabilities for r in b])
    assert np.abs(pa - pb).max() < 1e-4
    assert [r.grade for r in a] == [r.grade for r in b]
    assert len({r.grade for r in a}) >= 1
    assert b[0].model.sha256 == file_sha256(models["onnx"])
    assert b[0].model.name == "tiny"  # the card travelled into the ONNX metadata


def test_batch_equals_one_by_one(models, keras_predictor):
    batch = keras_predictor.predict_batch(models["photos"], batch_size=4)
    single = [keras_predictor.predict(p) for p in models["photos"]]
    for b, s in zip(batch, single, strict=True):
        assert np.allclose(b.probabilities, s.probabilities, atol=1e-5)
    assert keras_predictor.predict(list(models["photos"][:2]))[1].grade == single[1].grade


def test_run_directory_prefers_onnx_when_present(models, tmp_path):
    assert Predictor(models["run"]).model_path == models["run"] / "best.keras"
    run = tmp_path / "run"
    shutil.copytree(models["run"], run)
    shutil.copy(models["onnx"], run / "model.onnx")
    assert Predictor(run).model_path == run / "model.onnx"
    assert Predictor(run, engine="keras").model_path == run / "best.keras"


def test_model_errors(tmp_path, monkeypatch):
    with pytest.raises(errors.ModelError, match="not found"):
        Predictor(tmp_path / "missing.keras")
    with pytest.raises(errors.ModelError, match="without a model"):
        Predictor(tmp_path)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(errors.ModelError, match="cannot load"):
        Predictor(broken)
    monkeypatch.setattr(engines, "DEMO_DIR", tmp_path / "no_demo")
    with pytest.raises(errors.ModelError, match="demo model is missing"):
        resolve_model_path(None)


def test_bad_inputs_raise_typed_errors(models, keras_predictor, tmp_path):
    bad = write_bad_files(tmp_path)
    expected = {
        "zero": errors.EmptyImageError,
        "truncated": errors.TruncatedImageError,
        "text": errors.NotAnImageError,
        "gif": errors.UnsupportedFormatError,
        "bomb": errors.ImageTooLargeError,
    }
    for key, error in expected.items():
        with pytest.raises(error):
            keras_predictor.predict(bad[key])
    with pytest.raises(errors.ImageError):
        keras_predictor.predict(np.zeros((3, 3)))
    mixed = keras_predictor.predict_batch([bad["zero"], models["photos"][0]], errors="include")
    assert isinstance(mixed[0], PredictionError) and isinstance(mixed[1], Prediction)
    assert mixed[0].to_dict() == {"error": mixed[0].error, "error_type": "EmptyImageError"}
    assert mixed[0].path == str(bad["zero"])


def test_not_a_fundus_is_ungradable_with_reasons(keras_predictor, tmp_path):
    result = keras_predictor.predict(write_face(tmp_path / "face.png"))
    assert result.gradable is False and result.to_dict()["gradable"] is False
    assert result.quality.reasons
    assert len(result.probabilities) == 5


def test_heatmaps_from_keras_and_from_onnx_with_sibling(models, keras_predictor, tmp_path):
    overlay = keras_predictor.heatmap(models["photos"][0])
    assert overlay.shape == (SIZE, SIZE, 3) and overlay.dtype == np.uint8
    assert np.allclose(Predictor(models["onnx"]).heatmap(models["photos"][0]), overlay, atol=2)
    lonely = tmp_path / "lonely.onnx"
    shutil.copy(models["onnx"], lonely)
    with pytest.raises(errors.ModelError, match="heat maps need the Keras model"):
        Predictor(lonely).heatmap(models["photos"][0])


def test_heat_map_of_an_enhancing_model_is_drawn_on_the_photo_not_its_enhanced_input(models):
    from retinascreen.data.fundus import crop_fundus
    from retinascreen.serving.explain import overlay

    path = models["root"] / "ben-graham.keras"
    shutil.copy(models["keras"], path)
    card = read_card(path)
    card.preprocessing = {**card.preprocessing, "ben_graham": True}
    write_card(path, card)
    predictor = Predictor(path)
    photo = load_image(models["photos"][0])
    prepared = predictor.prepare(photo)
    assert prepared.view is not None and not np.array_equal(prepared.view, prepared.pixels)
    shown = predictor.heatmap(prepared)
    plain = crop_fundus(photo, SIZE)
    outside = plain.max(axis=2) <= 20
    assert outside.any()
    # Outside the fundus the overlay is the plain (black) crop, not Ben Graham's grey.
    cold = overlay(plain, np.zeros(plain.shape[:2], np.float32))
    np.testing.assert_array_equal(shown[outside], cold[outside])
    assert np.array_equal(predictor.heatmap(photo), shown)


def test_concurrent_predictions_from_threads(models):
    predictor = Predictor(models["keras"])
    expected = [r.probabilities for r in predictor.predict_batch(models["photos"])]
    seen: dict[int, list] = {}

    def work(i: int) -> None:
        seen[i] = list(predictor.predict(models["photos"][i]).probabilities)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(models["photos"]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, probs in seen.items():
        assert np.allclose(probs, expected[i], atol=1e-5)
    assert len(seen) == len(models["photos"])


def test_ordinal_model_loads_and_predicts_five_probabilities(models, tmp_path):
    """A model trained with the ordinal objective is saved with an OrdinalProbabilities layer."""
    import keras

    from retinascreen.models.ordinal import with_probabilities

    base = make_model(seed=3)
    score = keras.layers.Dense(1, name="score")(base.layers[-1].input)
    ordinal = with_probabilities(keras.Model(base.inputs, score), (0.5, 1.5, 2.5, 3.5), 0.2)
    path = save_model(ordinal, tmp_path / "ordinal.keras")
    result = Predictor(path).predict(models["photos"][0])
    assert len(result.probabilities) == 5
    assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert result.grade == int(np.argmax(result.probabilities))


def test_prepare_once_then_grade_and_explain(models, keras_predictor, monkeypatch):
    from retinascreen.data import fundus
    from retinascreen.data.images import load_image
    from tests.helpers.counting import count_calls

    photo = models["photos"][0]
    shape = load_image(photo).shape
    calls: dict[str, int] = {}
    count_calls(monkeypatch, fundus.find_disc, calls, "find_disc")
    count_calls(
        monkeypatch, fundus.crop_square, calls, "crops", when=lambda rgb, *_: rgb.shape == shape
    )
    prepared = keras_predictor.prepare(photo)
    assert isinstance(prepared, PreparedImage) and prepared.pixels.shape == (SIZE, SIZE, 3)
    result = keras_predictor.predict_prepared(prepared)
    overlay = keras_predictor.heatmap(prepared)
    # one field search; the quality verdict's crop and the model's, nothing more to explain it
    assert calls == {"find_disc": 1, "crops": 2}
    assert result == keras_predictor.predict(photo)
    assert np.array_equal(overlay, keras_predictor.heatmap(photo))


def test_a_model_without_a_card_gets_defaults_said_once(models, tmp_path, caplog):
    plain = tmp_path / "plain.keras"
    with zipfile.ZipFile(models["keras"]) as src, zipfile.ZipFile(plain, "w") as dst:
        for info in src.infolist():
            if info.filename != KERAS_ENTRY:
                dst.writestr(info, src.read(info.filename))
    with caplog.at_level(logging.INFO, logger="retinascreen.serving"):
        predictor = Predictor(plain)
    said = [r for r in caplog.records if "no model card" in r.getMessage()]
    assert len(said) == 1 and str(plain) in said[0].getMessage()
    assert predictor.card is None and predictor.model_info.synthetic is False
    result = predictor.predict(models["photos"][0]).to_dict()
    assert result["model"] == {
        "name": "plain",
        "version": "unversioned",
        "sha256": file_sha256(plain),
    }
    assert "synthetic" not in result and "warning" not in result


def _keras_with_card_text(source, path, text):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            if info.filename != KERAS_ENTRY:
                dst.writestr(info, src.read(info.filename))
        dst.writestr(KERAS_ENTRY, text)
    return path


@pytest.mark.parametrize(
    "text",
    ['{"name": "tiny", "version": ', "[1, 2]", '{"objective": "no-such-objective"}'],
    ids=["truncated-json", "not-an-object", "invalid-field"],
)
def test_a_damaged_card_in_a_keras_file_is_a_model_error(models, tmp_path, text):
    damaged = _keras_with_card_text(models["keras"], tmp_path / "damaged.keras", text)
    with pytest.raises(errors.ModelError, match="damaged.keras") as info:
        Predictor(damaged)
    assert "model card" in str(info.value)


def test_bad_preprocessing_in_a_card_is_a_model_error(models, tmp_path):
    card = read_card(models["keras"]).to_dict()
    card["preprocessing"] = {"size": SIZE, "sharpen": True}
    damaged = _keras_with_card_text(models["keras"], tmp_path / "odd.keras", json.dumps(card))
    with pytest.raises(errors.ModelError, match="odd.keras"):
        Predictor(damaged)


def test_a_damaged_card_in_an_onnx_file_is_a_model_error(models, tmp_path):
    import onnx

    model = onnx.load(str(models["onnx"]))
    for prop in model.metadata_props:
        if prop.key == ONNX_KEY:
            prop.value = prop.value[: len(prop.value) // 2]  # cut in the middle
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    with pytest.raises(errors.ModelError, match="damaged.onnx") as info:
        Predictor(damaged)
    assert "model card" in str(info.value)
