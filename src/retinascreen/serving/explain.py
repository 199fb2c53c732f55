"""Grad-CAM heat maps: where in the photograph the model found its evidence.

Works for every backbone and head. :func:`find_feature_layer` finds the backbone's last feature
map (rank 4, before the head's own pooling, depthwise and dropout layers); :func:`find_cam_layer`
walks back from it to the deepest activation whose map is still at least 1/8 of the input
across, because DR lesions (microaneurysms, exudates) are far smaller than the 1/32-resolution
final map can place.

Two weightings of the feature map by the gradients of the explained score:
- ``"hirescam"`` (default; Draelos & Carin, 2020): the element-wise product of gradients and
  activations, summed over channels. It shows exactly the locations that raised the score.
- ``"gradcam"`` (Selvaraju et al., 2017): channels weighted by their spatially averaged gradient.
The ReLU of the result, upsampled to the input size and scaled to 0..1, is the heat map.

The explained score is a grade's probability, or with ``target="referable"`` the probability of
referable DR (grades 2-4): the evidence for referral, which is what the product shows. On
synthetic photographs its mass falls on the lesion masks about 3x more than their share of
the fundus (``tests/serving/test_demo_model.py``), against about 1x for the final map.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from retinascreen.errors import ModelError
from retinascreen.grading import REFERABLE_MIN_GRADE

FEATURE_MAP_LAYER = "feature_map"  # the name build_model gives the backbone's output
_HEAD_LAYER_TYPES = (
    "AveragePooling2D",
    "MaxPooling2D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling2D",
    "DepthwiseConv2D",
    "Dropout",
    "SpatialDropout2D",
    "Flatten",
    "Dense",
    "Reshape",
    "Softmax",
    "Lambda",
)


def _output_shape(layer: Any) -> tuple | None:
    try:
        out = layer.output
    except (AttributeError, ValueError):
        return None
    if isinstance(out, list | tuple):
        return None
    return tuple(out.shape)


def find_feature_layer(model: Any) -> Any:
    """The last rank-4 feature map (spatial > 1) that feeds the classification head.

    Models from :func:`retinascreen.models.build.build_model` name it ``feature_map``.
    """
    names = [la.name for la in model.layers]
    if FEATURE_MAP_LAYER in names:
        return model.get_layer(FEATURE_MAP_LAYER)
    for layer in reversed(model.layers):
        if type(layer).__name__ in _HEAD_LAYER_TYPES or type(layer).__name__ == "InputLayer":
            continue
        shape = _output_shape(layer)
        if shape is None or len(shape) != 4:
            continue
        h, w = shape[1], shape[2]
        if h is not None and w is not None and h * w <= 1:
            continue
        return layer
    raise ModelError(f"{model.name}: no convolutional feature map found for Grad-CAM")


_ACTIVATIONS = ("Activation", "ReLU")


def _is_activation(layer: Any) -> bool:
    if type(layer).__name__ in _ACTIVATIONS:
        return True
    activation = getattr(layer, "activation", None)  # VGG's Conv2D(activation="relu")
    return type(layer).__name__ == "Conv2D" and getattr(activation, "__name__", "") == "relu"


def find_cam_layer(model: Any, *, resolution: int = 8) -> Any:
    """The deepest activation before the head whose map is >= 1/``resolution`` of the input."""
    feature = find_feature_layer(model)
    layers = model.layers[: model.layers.index(feature) + 1]
    size = model.input_shape[1]
    floor = max(2, int(size) // resolution) if size else 2
    for layer in reversed(layers):
        shape = _output_shape(layer)
        if not _is_activation(layer) or shape is None or len(shape) != 4 or shape[1] is None:
            continue
        if shape[1] >= floor:
            return layer
    return feature


def grad_cam(
    model: Any,
    image_batch: np.ndarray,
    class_index: int | None = None,
    layer_name: str | None = None,
    *,
    target: str = "grade",
    method: str = "hirescam",
) -> np.ndarray:
    """Heat map (S, S) float in 0..1 for the first image of ``image_batch``.

    ``image_batch``: (N, S, S, 3) model input (RGB 0..255). ``target="grade"`` explains
    ``class_index`` (default: the predicted grade); ``target="referable"`` explains the
    probability of referable DR. ``method``: ``"hirescam"`` or ``"gradcam"`` (module docstring).
    """
    return explain(model, image_batch, class_index, layer_name, target=target, method=method)[0]


def explain(
    model: Any,
    image_batch: np.ndarray,
    class_index: int | None = None,
    layer_name: str | None = None,
    *,
    target: str = "grade",
    method: str = "hirescam",
) -> tuple[np.ndarray, float]:
    """:func:`grad_cam`'s heat map and the probability it explains, from one forward pass."""
    import cv2
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ModelError("Grad-CAM needs the TensorFlow backend (KERAS_BACKEND=tensorflow)")
    if target not in ("grade", "referable") or method not in ("hirescam", "gradcam"):
        raise ValueError(f"unknown heat-map target {target!r} or method {method!r}")
    layer = model.get_layer(layer_name) if layer_name else find_cam_layer(model)
    cam_fn = _traced_cam(model, layer.name, target, method)
    x = np.asarray(image_batch[:1], dtype=np.float32)
    index = -1 if class_index is None else int(class_index)
    cam, probability = cam_fn(x, np.int32(index))
    cam = cam.numpy()
    size = (int(image_batch.shape[2]), int(image_batch.shape[1]))
    cam = cv2.resize(cam.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    cam = np.maximum(cam, 0)
    peak = float(cam.max())
    cam = (cam / peak).astype(np.float32) if peak > 0 else np.zeros_like(cam, dtype=np.float32)
    return cam, float(probability)


# One traced heat-map function per (model, layer, target, method), dropped with the model.
_TRACED: weakref.WeakKeyDictionary[Any, dict[tuple[str, str, str], Any]] = (
    weakref.WeakKeyDictionary()
)


def _traced_cam(model: Any, layer_name: str, target: str, method: str) -> Any:
    """``f(x, index) -> (cam (h, w), probability)`` as a ``tf.function``.

    The gradient is taken inside a traced graph, so TensorFlow prunes every op the heat map does
    not need: the backward pass computes gradients for the feature map only, never for the
    kernels. Eager ``GradientTape`` would run each convolution's filter gradient as well, and
    oneDNN's AVX-512 1x1 backward-weights kernel (TensorFlow 2.20-2.21) corrupts the heap for
    strided 1x1 convolutions at odd batch sizes, a heat map's batch of 1 among them
    (``docs/design.md``, "oneDNN and AVX-512").
    """
    import keras
    import tensorflow as tf

    per_model = _TRACED.setdefault(model, {})
    key = (layer_name, target, method)
    if key in per_model:
        return per_model[key]
    grad_model = keras.Model(model.inputs, [model.get_layer(layer_name).output, model.output])
    size = model.input_shape[1:]
    model_name = model.name  # the closure must not hold the model: it is the cache's weak key

    @tf.function(
        input_signature=[
            tf.TensorSpec((1, *size), tf.float32),
            tf.TensorSpec((), tf.int32),
        ],
        reduce_retracing=True,
    )
    def cam_fn(x: Any, index: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            features, preds = grad_model(x, training=False)
            if isinstance(preds, list | tuple):
                preds = preds[0]
            if target == "referable":
                probability = tf.reduce_sum(preds[:, REFERABLE_MIN_GRADE:], axis=1)
                score = tf.math.log(probability + 1e-7)
            else:
                chosen = tf.where(index < 0, tf.argmax(preds[0], output_type=tf.int32), index)
                probability = score = tf.gather(preds, chosen, axis=1)
        grads = tape.gradient(score, features)
        if grads is None:
            raise ModelError(f"{model_name}: no gradient reaches layer {layer_name!r}")
        if method == "hirescam":
            weighted = features * grads
        else:
            weighted = features * tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        return tf.nn.relu(tf.reduce_sum(weighted, axis=-1))[0], probability[0]

    per_model[key] = cam_fn
    return cam_fn


def overlay(rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The heat map in the JET colour map blended over ``rgb``: RGB uint8 of ``rgb``'s size."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    h, w = rgb.shape[:2]
    heat: np.ndarray = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    if heat.shape != (h, w):
        heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
    blended = (1 - alpha) * rgb.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
