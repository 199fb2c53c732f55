"""A U-Net whose encoder is an ImageNet-pretrained EfficientNet-Lite (the lesion segmenter).

The encoder is the backbone registry's EfficientNet-Lite (``create_backbone``, its own
``(x - 127) / 128`` normalisation inside the graph) cut after stage 6 (stride 32); the decoder
goes back up through the stage outputs at strides 16, 8, 4 and 2 (2x2 transposed
convolution, concatenation, separable convolution: light enough to run on a 1024 px crop in
about a second on two CPU threads) and a small full-resolution branch on the input (a microaneurysm
is a few pixels wide). Output: one sigmoid probability per class and pixel, the same contract
as :func:`~retinascreen.models.segmentation.build_segmenter` (input RGB 0..255, sides a
multiple of 32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from retinascreen.errors import ConfigError

__all__ = ["DECODER_WIDTHS", "LITE_SKIPS", "build_lite_unet", "freeze_encoder"]

# The last layer of each EfficientNet-Lite stage used as a skip, from stride 2 to stride 32
# (Lite0/1 names; Lite2 has more repeats in stages 2-6, see ``_skip_names``).
LITE_SKIPS = ("block1a_project_bn", "block2b_add", "block3b_add", "block5c_add", "block6d_add")
# Decoder channels at strides 16, 8, 4, 2, 1.
DECODER_WIDTHS = (96, 64, 48, 32, 16)
MULTIPLE = 32


def _skip_names(encoder: keras.Model) -> list[str]:
    """The last block of stages 1, 2, 3, 5 and 6 of ``encoder`` (whatever its repeats)."""
    names = [layer.name for layer in encoder.layers]
    out = []
    for stage in (1, 2, 3, 5, 6):
        blocks = sorted({n.split("_")[0] for n in names if n.startswith(f"block{stage}")})
        last = blocks[-1]
        ends = [n for n in names if n.startswith(f"{last}_") and n.endswith(("add", "project_bn"))]
        out.append(ends[-1])
    return out


def _sep_block(x: Any, width: int, name: str) -> Any:
    x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _up(x: Any, width: int, name: str) -> Any:
    """Twice the size by a learned 2x2 transposed convolution (exports to ONNX with any input
    size, which Keras's bilinear ``UpSampling2D`` does not)."""
    return layers.Conv2DTranspose(width, 2, strides=2, padding="same", name=f"{name}_up")(x)


def build_lite_unet(
    classes: Sequence[str],
    encoder: str = "efficientnet_lite0",
    weights: str = "imagenet",
    decoder_widths: Sequence[int] = DECODER_WIDTHS,
) -> keras.Model:
    """The pretrained-encoder U-Net: RGB 0..255 ``(None, None, 3)`` -> per-class sigmoid maps.

    ``weights``: ``"imagenet"`` (the registry package's checkpoint) or ``"none"``.
    """
    from retinascreen.models.backbones import create_backbone

    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"segmentation classes must be distinct names, got {classes!r}")
    if not encoder.startswith("efficientnet_lite"):
        raise ConfigError(f"lite U-Net encoder must be an EfficientNet-Lite, got {encoder!r}")
    if len(decoder_widths) != 5 or any(int(w) < 1 for w in decoder_widths):
        raise ConfigError(f"decoder_widths must be 5 positive widths, got {decoder_widths!r}")
    inputs = keras.Input((None, None, 3), name="image")
    backbone = create_backbone(encoder, inputs, weights=weights)
    skips = [backbone.get_layer(n).output for n in _skip_names(backbone)]
    x = skips[-1]
    for level, (skip, width) in enumerate(zip(reversed(skips[:-1]), decoder_widths, strict=False)):
        x = _up(x, int(width), f"dec{level}")
        x = layers.Concatenate(name=f"dec{level}_skip")([x, skip])
        x = _sep_block(x, int(width), f"dec{level}")
    # Full resolution: a few pixels' detail straight from the (normalised) input.
    scaled = backbone.get_layer("preprocess_lite").output
    fine = layers.Conv2D(8, 3, padding="same", use_bias=False, name="fine_conv")(scaled)
    fine = layers.BatchNormalization(name="fine_bn")(fine)
    fine = layers.Activation("relu", name="fine_relu")(fine)
    x = _up(x, int(decoder_widths[4]), "dec4")
    x = layers.Concatenate(name="dec4_skip")([x, fine])
    x = _sep_block(x, int(decoder_widths[4]), "dec4")
    outputs = layers.Conv2D(len(classes), 1, activation="sigmoid", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"segmenter_{encoder}_unet")


def freeze_encoder(model: keras.Model, stages: int) -> int:
    """Freeze the stem and the first ``stages`` encoder stages (their BatchNorm in inference
    mode); returns how many layers were frozen. 0 freezes nothing."""
    if stages <= 0:
        return 0
    prefixes = ("stem_",) + tuple(f"block{s}" for s in range(1, stages + 1))
    frozen = 0
    for layer in model.layers:
        if layer.name.startswith(prefixes):
            layer.trainable = False
            frozen += 1
    return frozen
