"""Model cards travel inside .keras and .onnx files and read back unchanged."""

from __future__ import annotations

import hashlib
import zipfile

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from retinascreen import build_model
from retinascreen.data.fundus import Preprocessing
from retinascreen.errors import ConfigError, ModelError
from retinascreen.models.modelcard import (
    KERAS_ENTRY,
    SYNTHETIC_INTENDED_USE,
    ModelCard,
    file_sha256,
    find_card,
    preprocessing_for,
    read_card,
    write_card,
)


def _card(**changes) -> ModelCard:
    values = {
        "name": "mini-wise",
        "version": "2",
        "backbone": "mini_xception",
        "head": "wise-srnet",
        "input_size": 32,
        "preprocessing": Preprocessing(size=32, ben_graham=True),
        "objective": "ordinal",
        "thresholds": [0.5, 1.5, 2.5, 3.5],
        "training_data": "synthetic-dr-v1 (train 2000)",
        "metrics": {"qwk": 0.71, "accuracy": 0.6},
        "synthetic": True,
    }
    return ModelCard(**{**values, **changes})


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("card") / "model.keras"
    build_model("mini_xception", "wise-srnet", size=32, widths=(8,)).save(path)
    return path


def test_card_round_trips_in_a_keras_file_that_keras_still_loads(keras_file, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(keras_file.read_bytes())
    x = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype("float32")
    before = keras.saving.load_model(path).predict(x, verbose=0)

    card = _card()
    write_card(path, card)
    assert KERAS_ENTRY in zipfile.ZipFile(path).namelist()
    assert read_card(path) == card
    np.testing.assert_array_equal(keras.saving.load_model(path).predict(x, verbose=0), before)


def test_writing_again_replaces_the_card(keras_file, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(keras_file.read_bytes())
    write_card(path, _card(version="1"))
    write_card(path, _card(version="3", metrics={"qwk": 0.8}))
    names = zipfile.ZipFile(path).namelist()
    assert names.count(KERAS_ENTRY) == 1
    card = read_card(path)
    assert card.version == "3" and card.metrics == {"qwk": 0.8}
    keras.saving.load_model(path)


def test_card_round_trips_in_onnx_metadata(tmp_path):
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    proto.metadata_props.add(key="author", value="someone")
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)

    card = _card(objective="softmax", thresholds=None)
    write_card(path, card)
    write_card(path, card)  # idempotent: one key, other metadata kept
    loaded = onnx.load(path)
    keys = [p.key for p in loaded.metadata_props]
    assert keys.count("retinascreen_model_card") == 1 and "author" in keys
    assert read_card(path) == card
    session = ort.InferenceSession(str(path))
    out = session.run(None, {"x": np.array([[-1.0, 0.0, 2.0]], dtype=np.float32)})[0]
    np.testing.assert_array_equal(out, [[0.0, 0.0, 2.0]])


def test_card_fields_and_defaults():
    card = _card()
    data = card.to_dict()
    assert data["preprocessing"] == {
        "size": 32,
        "ben_graham": True,
        "clahe": False,
        "equalize": False,
    }
    assert data["intended_use"] == SYNTHETIC_INTENDED_USE
    assert data["classes"][4] == "Proliferative DR"
    assert data["retinascreen_version"] and data["created"]
    real = ModelCard(synthetic=False, input_size=512)
    assert "Not for clinical use" not in real.intended_use
    assert real.preprocessing["size"] == 512
    with pytest.raises(ConfigError, match="objective"):
        ModelCard(objective="regression")
    future = ModelCard.from_dict({**data, "calibration": {"T": 1.3}})
    assert future.to_dict()["calibration"] == {"T": 1.3}


def test_json_file_and_run_directory(tmp_path):
    card = _card()
    write_card(tmp_path / "card.json", card)
    assert read_card(tmp_path / "card.json") == card
    write_card(tmp_path, card)  # a run directory -> RUN_DIR/model_card.json
    assert (tmp_path / "model_card.json").is_file()
    assert read_card(tmp_path) == card


def test_files_without_a_card_are_model_errors(keras_file, tmp_path):
    with pytest.raises(ModelError, match="no model card"):
        read_card(keras_file)
    with pytest.raises(ModelError, match="not found"):
        read_card(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable"):
        read_card(bad)
    with pytest.raises(ModelError):
        write_card(tmp_path / "model.pt", _card())


def test_file_sha256(keras_file):
    assert file_sha256(keras_file) == hashlib.sha256(keras_file.read_bytes()).hexdigest()


def test_find_card_is_none_without_a_card_and_strict_with_a_damaged_one(keras_file, tmp_path):
    assert find_card(keras_file) is None
    assert find_card(tmp_path) is None  # a run directory without a card or best.keras
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(keras_file.read_bytes())
    with zipfile.ZipFile(damaged, "a") as zf:
        zf.writestr(KERAS_ENTRY, "{not json")
    with pytest.raises(ModelError, match="damaged.keras.*not valid JSON"):
        find_card(damaged)
    (tmp_path / "model_card.json").write_text('{"objective": "bogus"}')
    with pytest.raises(ModelError, match="model_card.json.*invalid"):
        find_card(tmp_path)


def test_preprocessing_for_takes_the_card_at_the_model_size():
    assert preprocessing_for(None, 64) == Preprocessing(size=64)
    card = _card()
    card.preprocessing = {"size": 299, "ben_graham": True, "clahe": False}
    assert preprocessing_for(card, 128) == Preprocessing(size=128, ben_graham=True)
    card.preprocessing = {"size": 128, "sharpen": True}
    with pytest.raises(ModelError, match="invalid preprocessing"):
        preprocessing_for(card, 128)
