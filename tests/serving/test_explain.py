"""Grad-CAM: works on every head, and a trained model looks at the lesions."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retinascreen.models.build import build_model
from retinascreen.serving.explain import find_feature_layer, grad_cam, overlay

SIZE = 64


@pytest.mark.parametrize(
    "head", ["gap", "flatten-fc", "depthwise", "wise-srnet", "wise-srnet-dropout"]
)
def test_heatmap_for_every_head(head):
    model = build_model("mini_xception", head, size=SIZE, widths=(8, 16))
    x = np.random.default_rng(0).uniform(0, 255, (1, SIZE, SIZE, 3)).astype(np.float32)
    cam = grad_cam(model, x, class_index=3)
    assert cam.shape == (SIZE, SIZE) and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() <= 1.0
    assert find_feature_layer(model).name == "feature_map"


def test_feature_layer_found_without_the_name():
    import keras

    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inputs)
    x = keras.layers.Activation("relu", name="last_features")(x)
    x = keras.layers.AveragePooling2D(3)(x)
    x = keras.layers.DepthwiseConv2D(x.shape[1])(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    assert find_feature_layer(keras.Model(inputs, outputs)).name == "last_features"


def test_overlay_blends_a_colour_map():
    rgb = np.full((32, 32, 3), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[:4] = 1.0
    out = overlay(rgb, heat, alpha=0.5)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[-1, -1])  # hot top, cold bottom
    assert out[0, 0, 0] > out[-1, -1, 0]  # JET: red where hot


def _synthetic_set(seeds, grade):
    from retinascreen.synthetic import generate

    images, masks = [], []
    for seed in seeds:
        sample = generate(seed, grade, size=96)
        images.append(cv2.resize(sample.image, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
        lesion = np.zeros(sample.image.shape[:2], bool)
        for mask in sample.masks.values():
            lesion |= mask
        masks.append(
            cv2.resize(lesion.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
        )
    return np.stack(images).astype(np.float32), np.stack(masks).astype(bool)


@pytest.mark.slow
def test_trained_model_heatmap_falls_on_the_lesions():
    """Lesions are the only signal (grade 0 vs 3): the CAM mass on them beats chance (1.0).

    The ratio is the CAM share on the 3x3-dilated lesion mask over the mask's area share. Its
    median over the 10 held photos, measured with seeds 0-5 under the default kernels and with
    seeds 0-1 under ONEDNN_MAX_CPU_ISA=AVX2 and TF_ENABLE_ONEDNN_OPTS=0: 1.40 to 1.54 (accuracy
    0.95 to 1.0). Training runs differ by seed and by CPU kernels as much as by seed, so the bar
    is 1.2, well below all of them and still clearly above chance.
    """
    import keras

    keras.utils.set_random_seed(0)
    healthy, _ = _synthetic_set(range(0, 60), 0)
    sick, sick_masks = _synthetic_set(range(1000, 1060), 3)
    x = np.concatenate([healthy[:50], sick[:50]])
    y = np.array([0] * 50 + [3] * 50)
    model = build_model("mini_xception", "gap", size=SIZE, widths=(8, 16))
    for layer in model.layers:  # moving statistics must settle within the few steps we train
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    model.compile(
        keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=20, batch_size=16, verbose=0, shuffle=True)
    test_x = np.concatenate([healthy[50:], sick[50:]])
    test_y = np.array([0] * 10 + [3] * 10)
    accuracy = np.mean(model.predict(test_x, verbose=0).argmax(1) == test_y)
    assert accuracy >= 0.8, f"the tiny model did not learn the task ({accuracy:.0%})"
    ratios = []
    kernel = np.ones((3, 3), np.uint8)
    for image, mask in zip(sick[50:], sick_masks[50:], strict=True):
        if not mask.any():
            continue
        cam = grad_cam(model, image[None], class_index=3)
        region = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
        share = cam[region].sum() / max(cam.sum(), 1e-9)
        ratios.append(share / region.mean())
    assert np.median(ratios) > 1.2, ratios
