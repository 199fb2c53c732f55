"""``build_model``: backbone + head into one Keras model that takes RGB 0..255 pixels.

Layer layout of every model (training, Grad-CAM and export rely on it):
``input -> preprocess_* -> backbone layers -> "feature_map" (Identity) -> head_* -> "predictions"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import layers

from retinascreen.errors import ConfigError, ModelError
from retinascreen.models.backbones import create_backbone, get_backbone_spec
from retinascreen.models.heads import get_head

FEATURE_MAP_LAYER = "feature_map"
PHASES = ("head", "finetune", "full")


def _is_full_model_file(weights: Any) -> bool:
    if weights is None or str(weights).lower() in ("none", "imagenet"):
        return False
    name = Path(weights).name
    return name.endswith(".keras")


def build_model(
    backbone: str = "xception",
    head: str = "wise-srnet",
    size: int = 299,
    n_classes: int = 5,
    weights: str | Path | None = "none",
    *,
    widths: tuple[int, ...] | None = None,
    stem_stride: int | None = None,
    dropout: float = 0.5,
    name: str | None = None,
) -> keras.Model:
    """A ``keras.Model`` mapping RGB 0..255 (B, size, size, 3) to softmax probabilities (B, n_classes).

    ``weights``: ``"none"``, ``"imagenet"``, a backbone weights file (``.h5`` / ``.weights.h5``),
    or a full model (``.keras``, or ``.weights.h5`` saved from the same architecture), whose
    matching weights (all of them, or the backbone's when the head differs) are copied in.
    ``widths`` and ``stem_stride`` (1 or 2) shape ``mini_xception``.
    """
    spec = get_backbone_spec(backbone)
    head_builder = get_head(head)
    if not isinstance(size, int) or isinstance(size, bool) or size < spec.min_size:
        raise ConfigError(
            f"input size {size!r} is too small for {backbone}: it needs at least "
            f"{spec.min_size} px (default {spec.default_size})"
        )
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    full_file = _is_full_model_file(weights)
    named = weights is None or str(weights).lower() in ("none", "imagenet")
    weights_path = None if named or weights is None else Path(weights)
    if weights_path is not None and not weights_path.is_file():
        raise ModelError(f"weights file not found: {weights_path}")
    is_weights_h5 = weights_path is not None and weights_path.name.endswith(".weights.h5")

    inputs = keras.Input((size, size, 3), name="image")
    features_model = create_backbone(
        backbone,
        inputs,
        weights="none" if (full_file or is_weights_h5) else weights,
        widths=widths,
        stem_stride=stem_stride,
    )
    features = layers.Identity(name=FEATURE_MAP_LAYER)(features_model.output)
    outputs = head_builder(features, n_classes, dropout=float(dropout))
    model = keras.Model(inputs, outputs, name=name or f"{backbone}-{head}")
    if full_file and weights_path is not None:
        from retinascreen.models.engines import load_keras_model  # knows our custom layers

        copy_weights(load_keras_model(weights_path), model)
    elif is_weights_h5 and weights_path is not None:
        _load_weights_h5(model, features_model, weights_path)
    return model


def _load_weights_h5(model: keras.Model, features_model: keras.Model, path: Path) -> None:
    """A ``.weights.h5`` of the whole model, else of the backbone alone."""
    errors = []
    for target in (model, features_model):
        try:
            target.load_weights(str(path))
            return
        except Exception as exc:  # noqa: BLE001 - try the next reading, report both
            errors.append(f"{target.name}: {exc}")
    raise ModelError(f"could not load weights from {path}: " + "; ".join(errors))


def copy_weights(source: keras.Model, target: keras.Model) -> str:
    """Copy all weights when the shapes match, else the backbone's; returns "all" or "backbone"."""
    src, dst = source.get_weights(), target.get_weights()
    if len(src) == len(dst) and all(a.shape == b.shape for a, b in zip(src, dst, strict=True)):
        target.set_weights(src)
        return "all"
    src_layers = [la for la in backbone_layers(source) if la.weights]
    dst_layers = [la for la in backbone_layers(target) if la.weights]
    shapes_src = [w.shape for la in src_layers for w in la.get_weights()]
    shapes_dst = [w.shape for la in dst_layers for w in la.get_weights()]
    if not dst_layers or shapes_src != shapes_dst:
        raise ModelError(
            f"model {source.name!r} does not share its backbone with {target.name!r}; "
            "its weights cannot be used here"
        )
    for a, b in zip(src_layers, dst_layers, strict=True):
        b.set_weights(a.get_weights())
    return "backbone"


def _feature_index(model: keras.Model) -> int:
    names = [la.name for la in model.layers]
    if FEATURE_MAP_LAYER not in names:
        raise ModelError(
            f"model {model.name!r} has no {FEATURE_MAP_LAYER!r} layer; it was not built by "
            "retinascreen.build_model"
        )
    return names.index(FEATURE_MAP_LAYER)


def backbone_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The backbone's layers in order (no input, preprocessing, feature_map or head layers)."""
    end = _feature_index(model)
    return [
        la
        for la in model.layers[:end]
        if not isinstance(la, keras.layers.InputLayer) and not la.name.startswith("preprocess")
    ]


def head_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The head's layers (after ``feature_map``)."""
    return list(model.layers[_feature_index(model) + 1 :])


def set_trainable(model: keras.Model, phase: str, *, unfreeze_top: int = 0) -> int:
    """Freeze/unfreeze for a training phase; returns the number of trainable backbone layers.

    - ``"head"``: backbone frozen, head trainable (transfer learning, step 1).
    - ``"finetune"``: the top ``unfreeze_top`` backbone layers trainable (all when 0), with every
      BatchNormalization layer kept frozen (inference mode) as the seeds advise.
    - ``"full"``: everything trainable, BatchNormalization included (training from scratch).
    Recompile the model after calling this.
    """
    if phase not in PHASES:
        raise ConfigError(f"unknown training phase {phase!r}; choose one of: {', '.join(PHASES)}")
    if unfreeze_top < 0:
        raise ConfigError(f"unfreeze_top must be >= 0, got {unfreeze_top}")
    model.trainable = True
    backbone = backbone_layers(model)
    for la in head_layers(model):
        la.trainable = True
    if phase == "full":
        for la in backbone:
            la.trainable = True
        return len(backbone)
    chosen: set[int] = set()
    if phase == "finetune":
        top = backbone[-unfreeze_top:] if unfreeze_top else backbone
        chosen = {id(la) for la in top}
    count = 0
    for la in backbone:
        la.trainable = id(la) in chosen and not isinstance(la, keras.layers.BatchNormalization)
        count += int(la.trainable)
    return count


def count_params(model: keras.Model, *, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only the trainable ones)."""
    if trainable_only:
        return int(sum(int(w.numpy().size) for w in model.trainable_weights))
    return int(model.count_params())


def count_flops(model: keras.Model) -> int:
    """Floating-point operations of one forward pass at batch 1 (TensorFlow profiler).

    A multiply-add counts as 2 operations, as in the papers' FLOP tables.
    """
    if keras.backend.backend() != "tensorflow":
        raise ModelError("count_flops needs the TensorFlow backend")
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    shape = [1, *model.inputs[0].shape[1:]]
    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    frozen = convert_variables_to_constants_v2(concrete)
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")  # the v1 profiler prints deprecation notices
    try:
        info = tf.compat.v1.profiler.profile(
            graph=frozen.graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options
        )
    finally:
        logger.setLevel(level)
    return int(info.total_float_ops)
