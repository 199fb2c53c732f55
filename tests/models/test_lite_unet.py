"""The lesion segmenter with an ImageNet-pretrained EfficientNet-Lite encoder."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.errors import ConfigError, WeightsUnavailableError
from retinascreen.models.lite_unet import build_lite_unet, freeze_encoder

CLASSES = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool")


@pytest.fixture(scope="module")
def model():
    return build_lite_unet(CLASSES, weights="none")


def test_maps_pixels_of_any_multiple_of_32_to_one_probability_per_class(model):
    for side in (64, 96):
        x = np.random.default_rng(0).uniform(0, 255, (1, side, side, 3)).astype(np.float32)
        out = np.asarray(model(x, training=False))
        assert out.shape == (1, side, side, len(CLASSES))
        assert out.min() >= 0.0 and out.max() <= 1.0
    # the encoder's own normalisation is inside: the input is raw RGB 0..255
    assert model.get_layer("preprocess_lite") is not None


def test_the_encoder_starts_from_imagenet():
    from retinascreen.models.efficientnet_lite import imagenet_weights

    try:
        pretrained = build_lite_unet(CLASSES, weights="imagenet")
        expected = imagenet_weights("efficientnet_lite0")
    except WeightsUnavailableError as exc:
        pytest.skip(f"ImageNet weights not installed: {exc}")
    for name in ("stem_conv", "block3b_dwconv", "block6d_project_conv"):
        got = pretrained.get_layer(name).get_weights()[0]
        assert np.array_equal(got, expected[name][0])


def test_freezing_the_first_stages_leaves_the_decoder_trainable():
    model = build_lite_unet(CLASSES, weights="none")
    assert freeze_encoder(model, 0) == 0
    frozen = freeze_encoder(model, 2)
    assert frozen > 0
    assert not model.get_layer("stem_conv").trainable
    assert not model.get_layer("block2b_dwconv").trainable
    assert model.get_layer("block3a_dwconv").trainable
    assert model.get_layer("probabilities").trainable


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="distinct"):
        build_lite_unet(["a", "a"], weights="none")
    with pytest.raises(ConfigError, match="EfficientNet-Lite"):
        build_lite_unet(CLASSES, encoder="resnet50", weights="none")
