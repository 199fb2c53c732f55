"""The learned quality score: global features of the fundus field and a small tree ensemble.

The measured reasons (:func:`retinascreen.data.fundus.quality_measures`) say what a
photographer can fix; graders also reject photos that no single measure explains (dust spots,
uneven illumination, a hazy half, artefacts). :func:`quality_features` turns the field into a
vector of cheap global features (colour and brightness statistics inside the field, sharpness at
several scales, regional vessel visibility, a coarse downsampled picture); :class:`TreeEnsemble`
is a gradient-boosted tree model fitted on EyeQ's labels (``tools/make_quality_model.py``) and
stored as plain JSON (no pickle), evaluated here by hand. The feature extractor is pluggable:
a model file names its extractor (several joined by ``+``: their features are concatenated),
and :data:`EXTRACTORS` maps each name to its function. ``lite0-b4`` pools the feature maps of
the first four stages of ImageNet EfficientNet-Lite0 (:mod:`retinascreen.data.quality_backbone`,
a 1 MB ONNX file in the package: predicting never needs the weights package).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from retinascreen.errors import ConfigError

# The bundled model (written by tools/make_quality_model.py).
MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "quality_model.json"
LABELS = ("good", "usable", "reject")
# Features are measured on the field cropped to this size (the measures' working scale).
_SIZE = 256
# A coarse picture of the field: this many cells across.
_GRID = 4

FeatureExtractor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _ring_masks(size: int) -> list[np.ndarray]:
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    r = np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2) / (size / 2)
    return [(r >= lo) & (r < hi) for lo, hi in ((0.0, 0.35), (0.35, 0.65), (0.65, 0.9))]


_RINGS = _ring_masks(_SIZE)


def _cells(inner: np.ndarray, grid: int) -> list[np.ndarray]:
    size = inner.shape[0]
    edges = np.linspace(0, size, grid + 1).astype(int)
    out = []
    for i in range(grid):
        for j in range(grid):
            cell = np.zeros_like(inner)
            cell[edges[i] : edges[i + 1], edges[j] : edges[j + 1]] = True
            out.append(cell & inner)
    return out


def global_features(crop: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Colour, illumination, sharpness and spot features of a (256, 256, 3) field crop.

    ``inner`` marks the pixels inside the field (and inside the photo). Every value is a ratio
    or a share, so that a raw camera photo and a contrast-enhanced one are judged alike.
    """
    rgb = crop.astype(np.float32)
    pixels = rgb[inner]
    lum = np.maximum(rgb[:, :, 0], rgb[:, :, 1])
    green = rgb[:, :, 1]
    mean_lum = float(lum[inner].mean()) + 1.0
    mean_green = float(green[inner].mean()) + 1.0
    feats: list[float] = []
    # Colour: each channel's spread and percentiles relative to the field's brightness.
    for c in range(3):
        values = pixels[:, c]
        p10, p50, p90 = np.percentile(values, (10, 50, 90))
        feats += [p10 / 255, p50 / 255, p90 / 255, float(values.std()) / mean_lum]
    hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV)[inner].astype(np.float32)
    hue_hist = np.histogram(hsv[:, 0], bins=6, range=(0, 180))[0] / len(hsv)
    feats += list(hue_hist) + [float(hsv[:, 1].mean()) / 255, float(hsv[:, 1].std()) / 255]
    # Illumination: how even the brightness is, in rings and after a strong blur.
    smooth = cv2.GaussianBlur(lum, (0, 0), 12)[inner]
    median = float(np.median(smooth)) + 1.0
    feats += [
        float(smooth.std()) / median,
        float(np.mean(smooth < 0.5 * median)),
        float(np.mean(smooth < 0.7 * median)),
        float(np.mean(smooth > 1.4 * median)),
    ]
    feats += [
        float(lum[ring & inner].mean()) / mean_lum if np.any(ring & inner) else 1.0
        for ring in _RINGS
    ]
    # Sharpness at several scales: band energies of the green channel over its mean.
    blurs = [green] + [cv2.GaussianBlur(green, (0, 0), s) for s in (0.7, 1.4, 2.8, 5.6, 11.2)]
    bands = [float(np.abs(a - b)[inner].mean()) / mean_green for a, b in pairwise(blurs)]
    feats += bands + [bands[0] / (bands[2] + 1e-4), bands[1] / (bands[3] + 1e-4)]
    # Vessels and spots: dark thin lines and bright / dark small blobs.
    line = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    black = cv2.morphologyEx(green, cv2.MORPH_BLACKHAT, line)
    white = cv2.morphologyEx(green, cv2.MORPH_TOPHAT, line)
    feats += [
        float(np.percentile(black[inner], 90)) / mean_green,
        float(np.percentile(white[inner], 99)) / mean_green,
        float(np.mean(white[inner] > 0.25 * mean_green)),
        float(np.mean(black[inner] > 0.25 * mean_green)),
    ]
    # Regional vessel visibility and sharpness (a hazy or blurred part of the field).
    fine = np.abs(blurs[1] - blurs[2])
    coarse = np.abs(blurs[2] - blurs[3]) + 1e-3
    regional_vessels, regional_sharp = [], []
    for cell in _cells(inner, 3):
        if np.count_nonzero(cell) < 200:
            continue
        cell_green = float(green[cell].mean()) + 8.0
        regional_vessels.append(float(np.percentile(black[cell], 95)) / cell_green)
        regional_sharp.append(float(fine[cell].mean() / coarse[cell].mean()))
    for values in (regional_vessels or [0.0], regional_sharp or [0.0]):
        feats += [min(values), float(np.median(values)), max(values)]
    # How much of the field shows vessels and detail at all (a hazy or dark part hides them),
    # and how much of it departs in colour from the rest (blotches, reflections, dust).
    local_green = cv2.GaussianBlur(green, (0, 0), 8) + 8.0
    vessel_map = (cv2.GaussianBlur(black, (0, 0), 8) / local_green)[inner]
    sharp_map = (cv2.GaussianBlur(fine, (0, 0), 8) / cv2.GaussianBlur(coarse, (0, 0), 8))[inner]
    feats += [float(np.mean(vessel_map < t)) for t in (0.01, 0.02, 0.03)]
    feats += list(np.percentile(vessel_map, (10, 25)) / 0.05)
    feats += list(np.percentile(sharp_map, (10, 25)))
    colour = cv2.GaussianBlur(rgb, (0, 0), 6)[inner]
    departure = np.abs(colour - np.median(colour, axis=0)).max(axis=1) / mean_lum
    feats += [*np.percentile(departure, (75, 95)), float(np.mean(departure > 0.3))]
    # A coarse picture: each cell's brightness and blueness relative to the field.
    for cell in _cells(inner, _GRID):
        if np.count_nonzero(cell) < 50:
            feats += [0.0, 0.0]
            continue
        cell_pixels = rgb[cell]
        feats += [
            float(lum[cell].mean()) / mean_lum,
            float(cell_pixels[:, 2].mean()) / (float(cell_pixels[:, 0].mean()) + 1.0),
        ]
    feats.append(float(np.mean(inner)))
    return np.asarray(feats, np.float32)


def _lite0_b4(crop: np.ndarray, inner: np.ndarray) -> np.ndarray:
    from retinascreen.data.quality_backbone import pooled_features

    return pooled_features(crop, inner)


EXTRACTORS: dict[str, FeatureExtractor] = {"global-v1": global_features, "lite0-b4": _lite0_b4}


@dataclass(frozen=True)
class TreeEnsemble:
    """Gradient-boosted regression trees, one per class per stage, evaluated by hand.

    ``trees[stage][k]`` holds the arrays ``feature``, ``threshold``, ``left``, ``right`` and
    ``value`` of one tree (``left == -1`` marks a leaf); the class scores are
    ``init + learning_rate * sum(tree values)``, turned into probabilities by a softmax.
    """

    extractor: str
    measure_names: tuple[str, ...]
    learning_rate: float
    init: np.ndarray
    trees: tuple[tuple[dict[str, np.ndarray], ...], ...]
    reject_threshold: float
    meta: dict[str, Any]
    # Optional logistic regression (Reject vs the rest) on standardised features, averaged
    # with the trees' P(reject): ``mean``, ``scale``, ``coef`` and ``intercept``.
    linear: dict[str, np.ndarray] | None = None
    # Where P(reject) comes from: "mean" (the trees' and the linear model's average) or
    # "linear" (the linear model alone; the trees then only tell good from usable).
    reject_from: str = "mean"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TreeEnsemble:
        try:
            trees = tuple(
                tuple(
                    {
                        "feature": np.asarray(t["feature"], np.int64),
                        "threshold": np.asarray(t["threshold"], np.float64),
                        "left": np.asarray(t["left"], np.int64),
                        "right": np.asarray(t["right"], np.int64),
                        "value": np.asarray(t["value"], np.float64),
                    }
                    for t in stage
                )
                for stage in data["trees"]
            )
            model = cls(
                extractor=str(data["extractor"]),
                measure_names=tuple(data["measure_names"]),
                learning_rate=float(data["learning_rate"]),
                init=np.asarray(data["init"], np.float64),
                trees=trees,
                reject_threshold=float(data["reject_threshold"]),
                meta=dict(data.get("meta", {})),
                linear=(
                    {k: np.asarray(v, np.float64) for k, v in data["linear"].items()}
                    if data.get("linear")
                    else None
                ),
                reject_from=str(data.get("reject_from", "mean")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a quality model file: {exc}") from exc
        unknown = [name for name in model.extractor.split("+") if name not in EXTRACTORS]
        if unknown:
            raise ConfigError(f"unknown quality feature extractor {unknown[0]!r}")
        if model.reject_from not in ("mean", "linear") or (
            model.reject_from == "linear" and model.linear is None
        ):
            raise ConfigError(f"not a quality model file: reject_from {model.reject_from!r}")
        return model

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(good), P(usable), P(reject) for one feature vector."""
        x = np.asarray(features, np.float64)
        raw = self.init.copy()
        for stage in self.trees:
            for k, tree in enumerate(stage):
                node = 0
                left, right = tree["left"], tree["right"]
                while left[node] != -1:
                    go_left = x[tree["feature"][node]] <= tree["threshold"][node]
                    node = left[node] if go_left else right[node]
                raw[k] += self.learning_rate * tree["value"][node]
        raw -= raw.max()
        p = np.exp(raw)
        return p / p.sum()

    def reject_probability(self, features: np.ndarray, probabilities: np.ndarray) -> float:
        """P(reject): the trees' (``probabilities[2]``), the linear model's, or their average."""
        if self.linear is None:
            return float(probabilities[2])
        z = (np.asarray(features, np.float64) - self.linear["mean"]) / self.linear["scale"]
        logit = float(z @ self.linear["coef"] + self.linear["intercept"])
        linear = 1.0 / (1.0 + np.exp(-logit))
        if self.reject_from == "linear":
            return float(linear)
        return float((probabilities[2] + linear) / 2)


def feature_vector(
    measures: dict[str, float], crop: np.ndarray, inner: np.ndarray, extractor: str
) -> np.ndarray:
    """The model's input: the named measures, then each extractor's features of the crop.

    ``extractor`` is one name of :data:`EXTRACTORS` or several joined by ``+``.
    """
    from retinascreen.data.measures import QUALITY_THRESHOLDS

    names = tuple(QUALITY_THRESHOLDS)
    head = np.asarray([measures.get(name, 0.0) for name in names], np.float32)
    parts = [EXTRACTORS[name](crop, inner) for name in extractor.split("+")]
    return np.concatenate([head, *parts]).astype(np.float32)


@lru_cache(maxsize=1)
def bundled_model() -> TreeEnsemble | None:
    """The quality model shipped in the package (None if the file is missing)."""
    path = MODEL_PATH
    if not path.is_file():
        return None
    return TreeEnsemble.from_json(json.loads(path.read_text(encoding="utf-8")))
