"""Segmentation models: per-pixel probability maps (vessels, or the synthetic lesion types).

Two fully convolutional architectures, registered in :data:`SEGMENTERS` like the backbones:

- ``"encoder-decoder"``: the seed's plain encoder-decoder (strided separable convolutions
  down, ``Conv2DTranspose`` up, no skip connections);
- ``"unet"``: a U-Net (conv blocks, max-pooling down, transposed convolutions up, each
  decoder level concatenated with the encoder level of the same scale).

Input: RGB 0..255 of any size whose sides are multiples of ``2**depth``; the scaling is a
layer inside the model. Output: one sigmoid probability per class and pixel (classes may
overlap). The bundled models live in ``retinascreen/segmentation_models``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import layers

from retinascreen.errors import ConfigError
from retinascreen.models.engines import BUNDLED_SEGMENTERS as BUNDLED
from retinascreen.models.engines import SEGMENTATION_DIR as BUNDLED_DIR
from retinascreen.models.engines import bundled_segmenter

__all__ = [
    "BUNDLED",
    "BUNDLED_DIR",
    "SEGMENTERS",
    "build_segmenter",
    "bundled_segmenter",
    "register_segmenter",
]

Builder = Callable[[Any, int, int], Any]
SEGMENTERS: dict[str, Builder] = {}


def register_segmenter(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder(scaled_inputs, width, depth) -> feature map`` as ``name``."""

    def decorate(builder: Builder) -> Builder:
        SEGMENTERS[name] = builder
        return builder

    return decorate


def _conv_block(x: Any, width: int, name: str) -> Any:
    for i in (1, 2):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv{i}")(x)
        x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


@register_segmenter("encoder-decoder")
def encoder_decoder(x: Any, width: int, depth: int) -> Any:
    """The seed's encoder-decoder: [strided SeparableConv, SeparableConv] down, transposed up."""
    for level in range(depth):
        w = width * 2 ** min(level, 2)
        x = layers.SeparableConv2D(
            w, 3, strides=2, padding="same", activation="relu", name=f"down{level}_stride"
        )(x)
        x = layers.BatchNormalization(name=f"down{level}_bn")(x)
        x = layers.SeparableConv2D(
            w, 3, padding="same", activation="relu", name=f"down{level}_conv"
        )(x)
    for level in reversed(range(depth)):
        w = width * 2 ** min(level, 2)
        x = layers.Conv2DTranspose(w, 3, padding="same", activation="relu", name=f"up{level}_conv")(
            x
        )
        x = layers.BatchNormalization(name=f"up{level}_bn")(x)
        x = layers.Conv2DTranspose(
            w, 3, strides=2, padding="same", activation="relu", name=f"up{level}_stride"
        )(x)
    return x


@register_segmenter("unet")
def unet(x: Any, width: int, depth: int) -> Any:
    """U-Net: conv blocks with max-pooling down, transposed convs up and skip concatenations."""
    skips = []
    for level in range(depth):
        x = _conv_block(x, width * 2 ** min(level, 2), f"enc{level}")
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"pool{level}")(x)
    x = _conv_block(x, width * 2 ** min(depth, 2), "bottom")
    for level in reversed(range(depth)):
        w = width * 2 ** min(level, 2)
        x = layers.Conv2DTranspose(w, 2, strides=2, padding="same", name=f"up{level}")(x)
        x = layers.Concatenate(name=f"skip{level}")([x, skips[level]])
        x = _conv_block(x, w, f"dec{level}")
    return x


def build_segmenter(
    arch: str = "unet",
    classes: Sequence[str] = ("vessels",),
    width: int = 16,
    depth: int = 4,
) -> keras.Model:
    """A fully convolutional ``keras.Model``: RGB 0..255 ``(None, None, 3)`` -> probabilities.

    The output has one sigmoid channel per name in ``classes``; height and width of the input
    must be multiples of ``2**depth``.
    """
    if arch not in SEGMENTERS:
        raise ConfigError(
            f"unknown segmentation architecture {arch!r}; choose one of: "
            f"{', '.join(sorted(SEGMENTERS))}"
        )
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise ConfigError(f"segmentation classes must be distinct names, got {classes!r}")
    if int(width) < 1 or not 1 <= int(depth) <= 6:
        raise ConfigError(f"width must be >= 1 and depth 1..6, got width={width}, depth={depth}")
    inputs = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="preprocess_unit")(inputs)
    x = SEGMENTERS[arch](x, int(width), int(depth))
    outputs = layers.Conv2D(len(classes), 1, activation="sigmoid", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"segmenter_{arch.replace('-', '_')}")
