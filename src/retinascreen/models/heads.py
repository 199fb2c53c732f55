"""Classification heads of the Wise-SrNet paper and its ablations (``shared/seeds/wise-srnet.md``).

A head turns a backbone feature map (B, H, W, C) into softmax probabilities (B, n_classes).
Every head works at every feature-map size: kernels that "cover the whole map" are sized from
the map itself. Wise-SrNet's 3x3 'valid' average pooling needs a map of at least 3x3; on a
smaller map the pool is clipped to the map (2x2 -> pool 2, 1x1 -> no pool), so the depthwise
kernel still sees the whole (pooled) map.

The final Dense is float32 so the probabilities stay float32 under mixed precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import layers

from retinascreen.errors import ConfigError

HeadBuilder = Callable[..., Any]
HEADS: dict[str, HeadBuilder] = {}
WISE_POOL = 3


def register_head(name: str) -> Callable[[HeadBuilder], HeadBuilder]:
    """Decorator registering ``builder(features, n_classes, *, dropout) -> probabilities``."""

    def decorate(builder: HeadBuilder) -> HeadBuilder:
        HEADS[name] = builder
        return builder

    return decorate


def get_head(name: str) -> HeadBuilder:
    """The registered head builder, or ConfigError listing the valid names."""
    try:
        return HEADS[name]
    except KeyError:
        raise ConfigError(
            f"unknown head {name!r}; choose one of: {', '.join(sorted(HEADS))}"
        ) from None


def _small_normal() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=0.01)


def _predictions(x: Any, n_classes: int) -> Any:
    """The seed's softmax Dense: RandomNormal(0, 0.01) kernel, zero bias, float32."""
    return layers.Dense(
        n_classes,
        activation="softmax",
        kernel_initializer=_small_normal(),
        bias_initializer=keras.initializers.Zeros(),
        dtype="float32",
        name="predictions",
    )(x)


def _map_size(x: Any) -> tuple[int, int]:
    height, width = x.shape[1], x.shape[2]
    if height is None or width is None:
        raise ConfigError("heads need a fixed input size (the feature map size must be known)")
    return int(height), int(width)


def _whole_map_depthwise(x: Any, *, nonneg: bool, name: str) -> Any:
    """DepthwiseConv2D whose kernel covers the whole map -> (B, 1, 1, C)."""
    return layers.DepthwiseConv2D(
        _map_size(x),
        padding="valid",
        depthwise_initializer=_small_normal(),
        bias_initializer=keras.initializers.Zeros(),
        depthwise_constraint=keras.constraints.NonNeg() if nonneg else None,
        name=name,
    )(x)


@register_head("gap")
def gap(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """GlobalAveragePooling2D + softmax Dense (the seed's baseline)."""
    x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    return _predictions(x, n_classes)


@register_head("gap-dropout")
def gap_dropout(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """GlobalAveragePooling2D, Dropout, softmax Dense."""
    x = layers.GlobalAveragePooling2D(name="head_gap")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return _predictions(x, n_classes)


@register_head("flatten-fc")
def flatten_fc(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """Flatten the whole feature map into the softmax Dense."""
    x = layers.Flatten(name="head_flatten")(x)
    return _predictions(x, n_classes)


@register_head("depthwise")
def depthwise(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """Whole-map DepthwiseConv2D (no constraint), Flatten, softmax Dense."""
    x = _whole_map_depthwise(x, nonneg=False, name="head_depthwise")
    x = layers.Flatten(name="head_flatten")(x)
    return _predictions(x, n_classes)


@register_head("depthwise-nonneg")
def depthwise_nonneg(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """Whole-map DepthwiseConv2D with a NonNeg constraint, Flatten, softmax Dense."""
    x = _whole_map_depthwise(x, nonneg=True, name="head_depthwise")
    x = layers.Flatten(name="head_flatten")(x)
    return _predictions(x, n_classes)


def _wise_pool(x: Any) -> Any:
    """AveragePooling2D(3, 'valid'), clipped to the map when it is smaller than 3x3."""
    pool = min(WISE_POOL, *_map_size(x))
    if pool <= 1:
        return x
    return layers.AveragePooling2D(pool, padding="valid", name="head_avgpool")(x)


@register_head("wise-srnet")
def wise_srnet(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """Wise-SrNet: AveragePooling2D(3, valid), whole-map non-negative DepthwiseConv2D, Flatten, Dense."""
    x = _wise_pool(x)
    x = _whole_map_depthwise(x, nonneg=True, name="head_depthwise")
    x = layers.Flatten(name="head_flatten")(x)
    return _predictions(x, n_classes)


@register_head("wise-srnet-dropout")
def wise_srnet_dropout(x: Any, n_classes: int, *, dropout: float = 0.5) -> Any:
    """Wise-SrNet with Dropout before the softmax Dense."""
    x = _wise_pool(x)
    x = _whole_map_depthwise(x, nonneg=True, name="head_depthwise")
    x = layers.Flatten(name="head_flatten")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    return _predictions(x, n_classes)
