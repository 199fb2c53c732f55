"""Backbones, heads and build_model: every combination builds and trains, weights load offline."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest

from retinascreen import build_model
from retinascreen.errors import ConfigError, ModelError, WeightsUnavailableError
from retinascreen.models import (
    BACKBONES,
    FEATURE_MAP_LAYER,
    HEADS,
    backbone_layers,
    count_flops,
    count_params,
    create_backbone,
    head_layers,
    set_trainable,
)
from retinascreen.models.layers import CaffePreprocess

TINY = {"widths": (8, 16)}
MIN_SIZES = {"xception": 71, "inception_v3": 75, "vgg16": 32, "vgg19": 32, "resnet50": 32}


def _pixels(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3)).astype("float32")


def _train_one_step(model: keras.Model, size: int) -> list[np.ndarray]:
    """One optimiser step on 4 random images; returns the weights before the step."""
    before = [w.copy() for w in model.get_weights()]
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,  # one step: tracing and XLA would cost more than they save
    )
    loss = model.train_on_batch(_pixels(4, size), np.array([0, 1, 2, 4]))
    assert np.isfinite(loss)
    return before


def _changed(before: list[np.ndarray], after: list[np.ndarray]) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_registries_list_every_name_of_the_spec():
    assert set(BACKBONES) == {
        "xception",
        "vgg16",
        "vgg19",
        "resnet50",
        "inception_v3",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
        "mini_xception",
    }
    assert set(HEADS) == {
        "gap",
        "gap-dropout",
        "flatten-fc",
        "depthwise",
        "depthwise-nonneg",
        "wise-srnet",
        "wise-srnet-dropout",
    }


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_head_trains_one_step_on_mini_xception(head):
    model = build_model("mini_xception", head, size=32, **TINY)
    probs = model.predict(_pixels(3, 32), verbose=0)
    assert probs.shape == (3, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    before = _train_one_step(model, 32)
    assert _changed(before, model.get_weights())
    if head in ("depthwise-nonneg", "wise-srnet", "wise-srnet-dropout"):
        assert model.get_layer("head_depthwise").get_weights()[0].min() >= 0.0


@pytest.mark.parametrize("backbone", sorted(MIN_SIZES))
def test_every_keras_backbone_trains_one_step_at_its_smallest_size(backbone):
    size = MIN_SIZES[backbone]
    model = build_model(backbone, "wise-srnet", size=size)
    assert model.input_shape == (None, size, size, 3)
    before = _train_one_step(model, size)
    assert _changed(before, model.get_weights())
    # Every head attaches to this backbone's (tiny) feature map.
    features = model.get_layer(FEATURE_MAP_LAYER).output
    for head in HEADS:
        out = HEADS[head](features, 3, dropout=0.2)
        assert tuple(out.shape) == (None, 3)


def test_wise_srnet_pool_is_clipped_on_maps_smaller_than_three():
    model = build_model("vgg16", "wise-srnet", size=32)  # 1x1 feature map: no pooling
    assert model.get_layer(FEATURE_MAP_LAYER).output.shape[1:3] == (1, 1)
    assert "head_avgpool" not in [la.name for la in model.layers]
    assert model.get_layer("head_depthwise").kernel_size == (1, 1)
    model = build_model("mini_xception", "wise-srnet", size=40, **TINY)  # 9x9 -> 3x3
    assert model.get_layer("head_depthwise").kernel_size == (3, 3)


def test_xception_wise_srnet_512_matches_the_seed_code():
    shape = (512, 512, 3)
    input_tensor = keras.Input(shape=shape)
    base_model = keras.applications.Xception(
        input_tensor=input_tensor, weights=None, include_top=False
    )
    avg = keras.layers.AveragePooling2D(3, padding="valid")(base_model.output)
    depthw = keras.layers.DepthwiseConv2D(
        5,
        depthwise_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.01),
        bias_initializer=keras.initializers.Zeros(),
        depthwise_constraint=keras.constraints.NonNeg(),
    )(avg)
    flat = keras.layers.Flatten()(depthw)
    preds = keras.layers.Dense(
        67,
        activation="softmax",
        kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.01),
        bias_initializer=keras.initializers.Zeros(),
    )(flat)
    seed = keras.Model(inputs=base_model.input, outputs=preds)

    ours = build_model("xception", "wise-srnet", size=512, n_classes=67)
    assert count_params(ours) == seed.count_params()
    assert ours.get_layer("head_depthwise").kernel_size == (5, 5)


def test_unknown_names_and_small_sizes_are_config_errors():
    with pytest.raises(ConfigError, match="mini_xception.*resnet50.*xception"):
        build_model("resnet18")
    with pytest.raises(ConfigError, match="wise-srnet"):
        build_model("mini_xception", "attention", size=32)
    with pytest.raises(ConfigError, match="at least 71"):
        build_model("xception", size=64)
    with pytest.raises(ConfigError, match="widths"):
        build_model("vgg16", size=32, widths=(8,))


def test_model_takes_pixels_and_applies_the_backbone_preprocessing_inside():
    x = _pixels(2, 32, seed=1)
    ours = build_model("vgg16", "gap", size=32)
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    weights = [w for la in backbone_layers(ours) for w in la.get_weights()]
    reference.set_weights(weights)
    features = keras.Model(ours.input, ours.get_layer(FEATURE_MAP_LAYER).output)
    expected = reference.predict(keras.applications.vgg16.preprocess_input(x.copy()), verbose=0)
    np.testing.assert_allclose(features.predict(x, verbose=0), expected, rtol=1e-4, atol=1e-3)

    xcep = build_model("xception", "gap", size=71)
    pre = keras.Model(xcep.input, xcep.get_layer("preprocess_tf").output)
    x71 = _pixels(1, 71, seed=2)
    np.testing.assert_allclose(
        pre.predict(x71, verbose=0),
        keras.applications.xception.preprocess_input(x71.copy()),
        atol=1e-6,
    )
    mini = build_model("mini_xception", "gap", size=32, **TINY)
    pre = keras.Model(mini.input, mini.get_layer("preprocess_unit").output)
    np.testing.assert_allclose(pre.predict(x, verbose=0), x / 255.0, atol=1e-6)


def _write_legacy_h5(model: keras.Model, path) -> None:
    from keras.src.legacy.saving import legacy_h5_format

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


def test_imagenet_weights_load_from_the_keras_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    donor = keras.applications.VGG16(include_top=False, weights=None)
    cached = tmp_path / "keras" / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_legacy_h5(donor, cached)
    model = build_model("vgg16", "gap", size=32, weights="imagenet")
    loaded = [w for la in backbone_layers(model) for w in la.get_weights()]
    expected = donor.get_weights()
    assert len(loaded) == len(expected)
    for a, b in zip(loaded, expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_imagenet_weights_offline_without_cache_name_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty"))
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("resnet50", "gap", size=32, weights="imagenet")
    message = str(info.value)
    assert "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "empty" / "models") in message
    assert "https://storage.googleapis.com/" in message
    folder = tmp_path / "empty" / "models"
    assert not folder.exists() or not any(folder.iterdir())  # no half-written file left


def test_mini_xception_has_no_imagenet_weights():
    with pytest.raises(ConfigError, match="no pretrained ImageNet weights"):
        build_model("mini_xception", size=32, weights="imagenet")


def test_missing_weights_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        build_model("mini_xception", size=32, weights=tmp_path / "nope.weights.h5")


def test_keras_save_and_load_give_identical_outputs(tmp_path):
    x = _pixels(2, 32, seed=3)
    for model in (
        build_model("mini_xception", "wise-srnet", size=32, **TINY),
        build_model("vgg16", "depthwise", size=32),  # carries the custom CaffePreprocess layer
    ):
        path = tmp_path / f"{model.name}.keras"
        model.save(path)
        loaded = keras.saving.load_model(path)
        np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))


def test_weights_from_a_saved_model_warm_start_a_new_one(tmp_path):
    x = _pixels(2, 32, seed=4)
    source = build_model("mini_xception", "gap", size=32, **TINY)
    _train_one_step(source, 32)
    source.save(tmp_path / "run.keras")
    source.save_weights(tmp_path / "run.weights.h5")
    same = build_model("mini_xception", "gap", size=32, weights=tmp_path / "run.keras", **TINY)
    np.testing.assert_allclose(same.predict(x, verbose=0), source.predict(x, verbose=0), atol=1e-6)
    same = build_model("mini_xception", "gap", size=32, weights=tmp_path / "run.weights.h5", **TINY)
    np.testing.assert_allclose(same.predict(x, verbose=0), source.predict(x, verbose=0), atol=1e-6)
    # A backbone-only .weights.h5 (saved from the backbone model) loads into the backbone.
    inputs = keras.Input((32, 32, 3))
    donor = create_backbone("mini_xception", inputs, widths=(8, 16))
    donor.save_weights(tmp_path / "backbone.weights.h5")
    fresh = build_model(
        "mini_xception", "gap", size=32, weights=tmp_path / "backbone.weights.h5", **TINY
    )
    loaded = [w for la in backbone_layers(fresh) for w in la.get_weights()]
    for a, b in zip(loaded, donor.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # Another head: only the backbone is copied.
    other = build_model(
        "mini_xception", "wise-srnet", size=32, n_classes=3, weights=tmp_path / "run.keras", **TINY
    )
    for a, b in zip(backbone_layers(other), backbone_layers(source), strict=True):
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)


def test_set_trainable_freezes_backbone_and_keeps_batchnorm_frozen():
    model = build_model("mini_xception", "gap", size=32, **TINY)
    backbone = backbone_layers(model)
    assert set_trainable(model, "head") == 0
    frozen = [w.copy() for la in backbone for w in la.get_weights()]
    _train_one_step(model, 32)
    after = [w for la in backbone for w in la.get_weights()]
    assert not _changed(frozen, after)
    assert all(la.trainable for la in head_layers(model))

    n = set_trainable(model, "finetune", unfreeze_top=6)
    top = backbone[-6:]
    assert n == sum(not isinstance(la, keras.layers.BatchNormalization) for la in top)
    bns = [la for la in backbone if isinstance(la, keras.layers.BatchNormalization)]
    assert bns and not any(la.trainable for la in bns)
    moving = [w.copy() for la in bns for w in la.get_weights()]
    _train_one_step(model, 32)
    assert not _changed(moving, [w for la in bns for w in la.get_weights()])

    set_trainable(model, "full")
    assert all(la.trainable for la in backbone)
    with pytest.raises(ConfigError, match="phase"):
        set_trainable(model, "warmup")


def test_count_flops_matches_an_analytic_count_and_scales_with_area():
    conv = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, use_bias=False)])
    assert count_flops(conv) == 2 * 3 * 3 * 3 * 4 * 6 * 6
    small = count_flops(build_model("mini_xception", "gap", size=36, **TINY))
    large = count_flops(build_model("mini_xception", "gap", size=68, **TINY))
    assert 3.0 < large / small < 5.0


def test_mixed_precision_keeps_float32_probabilities():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("mini_xception", "wise-srnet", size=32, **TINY)
        assert model.get_layer("head_depthwise").compute_dtype == "float16"
        assert model.output.dtype == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_caffe_preprocessing_exports_to_onnx():
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    ort = pytest.importorskip("onnxruntime")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, CaffePreprocess()(inputs))
    spec = (tf.TensorSpec((None, 8, 8, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=17)
    session = ort.InferenceSession(proto.SerializeToString())
    x = _pixels(2, 8, seed=5)
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(out, keras.applications.vgg16.preprocess_input(x.copy()), atol=1e-4)
