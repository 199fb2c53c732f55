"""Pooled ImageNet features of a fundus field for the learned quality score (``lite0-b4``).

The first four stages of EfficientNet-Lite0 with Google's ImageNet weights (up to
``block4c``: 262 k parameters), shipped as a 1 MB ONNX file
(``assets/quality_backbone.onnx``, written by ``tools/make_quality_model.py``), so predicting
needs ONNX Runtime (a dependency) but neither the weights package nor Keras. Its input is the
field crop of :func:`retinascreen.data.fundus.field_crop` (256 x 256 RGB, 0..255); the
network normalises it itself (``(x - 127) / 128``). Its two feature maps (``block3b``: 32 x 32
x 40, ``block4c``: 16 x 16 x 80) are pooled over the pixels inside the field only: the mean
and the standard deviation of each channel on both maps, and the 10th and 90th percentiles on
the second (a hazy or dark part of the field shows as a tail, not in the mean).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retinascreen.errors import ConfigError

BACKBONE_PATH = Path(__file__).resolve().parents[1] / "assets" / "quality_backbone.onnx"
INPUT_SIZE = 256
# Channels of the two feature maps (block3b, block4c): how the outputs are told apart.
CHANNELS = (40, 80)
N_FEATURES = 2 * CHANNELS[0] + 4 * CHANNELS[1]


@lru_cache(maxsize=1)
def _session(path: Path = BACKBONE_PATH) -> Any:
    """The ONNX Runtime session (two threads at most: the gate runs beside the model)."""
    import onnxruntime as ort

    if not path.is_file():
        raise ConfigError(f"the quality model's backbone is missing: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = min(2, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise ConfigError(f"{path.name}: not a quality backbone ({exc})") from exc


def feature_maps(crop: np.ndarray, path: Path = BACKBONE_PATH) -> tuple[np.ndarray, np.ndarray]:
    """The (32, 32, 40) and (16, 16, 80) feature maps of one (256, 256, 3) crop."""
    if crop.shape != (INPUT_SIZE, INPUT_SIZE, 3):
        raise ValueError(f"expected a ({INPUT_SIZE}, {INPUT_SIZE}, 3) crop, got {crop.shape}")
    session = _session(path)
    name = session.get_inputs()[0].name
    outputs = session.run(None, {name: crop[None].astype(np.float32)})
    by_channels = {out.shape[-1]: out[0] for out in outputs}
    try:
        return by_channels[CHANNELS[0]], by_channels[CHANNELS[1]]
    except KeyError as exc:
        raise ConfigError(f"{path.name}: unexpected outputs {sorted(by_channels)}") from exc


def _weights(inner: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(inner.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)


def _mean_std(fmap: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    w = weights[:, :, None] / (weights.sum() + 1e-6)
    mean = (fmap * w).sum(axis=(0, 1))
    std = np.sqrt(np.maximum(((fmap - mean) ** 2 * w).sum(axis=(0, 1)), 0.0))
    return [mean, std]


def pool(b3: np.ndarray, b4: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The ``N_FEATURES`` pooled values of the two maps over the field (``inner``, 256 px)."""
    w3, w4 = _weights(inner, b3.shape[0]), _weights(inner, b4.shape[0])
    inside = b4[w4 > 0.5]
    if len(inside) < 4:  # hardly any field: pool the whole map
        inside = b4.reshape(-1, b4.shape[-1])
    tails = list(np.percentile(inside, (10, 90), axis=0))
    return np.concatenate([*_mean_std(b3, w3), *_mean_std(b4, w4), *tails]).astype(np.float32)


def pooled_features(crop: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The ``lite0-b4`` features of a field crop and its inside mask."""
    return pool(*feature_maps(crop), inner)
