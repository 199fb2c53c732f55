"""Small serialisable layers that put a backbone's ``preprocess_input`` inside the model.

They use plain tensor ops (no ``Lambda``), so ``.keras`` files load without ``safe_mode``
exceptions and ``tf2onnx`` converts them to Gather/Sub nodes.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

IMAGENET_BGR_MEANS = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="retinascreen")
class CaffePreprocess(keras.layers.Layer):
    """ImageNet 'caffe' mode: RGB -> BGR, then subtract the BGR channel means (no scaling).

    Equals ``keras.applications.vgg16.preprocess_input`` (and resnet50's) on RGB 0..255 input.
    """

    def __init__(
        self, means: tuple[float, float, float] = IMAGENET_BGR_MEANS, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.means = tuple(float(m) for m in means)

    def call(self, inputs: Any) -> Any:
        bgr = ops.take(inputs, [2, 1, 0], axis=-1)
        means = ops.cast(ops.convert_to_tensor(self.means), bgr.dtype)
        return bgr - means

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "means": list(self.means)}
