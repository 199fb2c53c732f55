"""Tiny segmentation models with the shared contract's I/O and model card (no training).

Input (None, None, 3) RGB 0..255, output (None, None, n_classes) sigmoid probabilities. The
weights are set by hand so the maps mean something a test can check: the ``vessels`` channel
is high where green is below GREEN_MIDPOINT (vessels are dark in the green channel), every other channel on
bright pixels. The graph halves and doubles the picture four times, so H and W must be
multiples of 16 as in the real family.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

LESION_CLASSES = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool")
GREEN_MIDPOINT = 55.0  # drawn fundus: background green 68-105, vessels 25-37


def build_tiny_segmenter(classes: Sequence[str] = ("vessels",), depth: int = 4):  # type: ignore[no-untyped-def]
    """A fully convolutional Keras model: per-pixel logistic of the green level."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = inputs
    for _ in range(depth):
        x = keras.layers.AveragePooling2D(1)(x)  # keeps the size; the real nets pool here
    head = keras.layers.Conv2D(len(classes), 1, activation="sigmoid", name="maps")
    outputs = head(x)
    kernel = np.zeros((1, 1, 3, len(classes)), np.float32)
    bias = np.zeros(len(classes), np.float32)
    for i, name in enumerate(classes):
        sign = -1.0 if name == "vessels" else 1.0
        kernel[0, 0, 1, i] = sign / 6.0  # green level: 6 grey levels per logit unit
        bias[i] = -sign * GREEN_MIDPOINT / 6.0  # p = 0.5 at this green level
    head.set_weights([kernel, bias])
    return keras.Model(inputs, outputs)


def save_tiny_segmenter(
    folder: Path,
    name: str = "vessels",
    classes: Sequence[str] = ("vessels",),
    *,
    thresholds: Sequence[float] | None = None,
    input_size: int = 64,
    synthetic: bool = False,
    training_data: str = "hand-set weights (tests)",
    onnx: bool = False,
    preprocessing: dict[str, object] | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """Save a tiny segmenter with its card as ``folder/<name>.keras`` (and ``.onnx``)."""
    from retinascreen.models.modelcard import ModelCard, write_card

    folder.mkdir(parents=True, exist_ok=True)
    model = build_tiny_segmenter(classes)
    path = folder / f"{name}.keras"
    model.save(path)
    card = ModelCard.from_dict(
        {
            "name": f"tiny-{name}",
            "version": "0.1",
            "task": "segmentation",
            "backbone": "unet",
            "head": "segmentation",
            "input_size": input_size,
            "classes": list(classes),
            "thresholds": list(thresholds or [0.5] * len(classes)),
            "preprocessing": {"size": input_size, **(preprocessing or {})},
            "training_data": training_data,
            "synthetic": synthetic,
            **(extra or {}),
        }
    )
    write_card(path, card)
    if onnx:
        from retinascreen.serving.export import keras_to_onnx

        write_card(keras_to_onnx(model, folder / f"{name}.onnx"), card)
    return path


@pytest.fixture(scope="session")
def segmentation_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``vessels`` and ``lesions`` (synthetic card) tiny models at 64 px, saved once per run."""
    folder = tmp_path_factory.mktemp("segmenters")
    return {
        "vessels": save_tiny_segmenter(folder, "vessels", training_data="DRIVE (tests)"),
        "lesions": save_tiny_segmenter(
            folder,
            "lesions",
            LESION_CLASSES,
            synthetic=True,
            training_data="synthetic generator lesion masks (tests)",
        ),
    }


def left_neighbour_segmenter(folder: Path, **extra: object):  # type: ignore[no-untyped-def]
    """A lesion 'model' whose map at a pixel is its left neighbour's brightness: unlike the
    real ones, it is not fair to mirror images, so flip averaging changes its maps."""
    import keras

    from retinascreen.models.modelcard import read_card, write_card

    path = save_tiny_segmenter(folder, "lesions", LESION_CLASSES, extra=extra or None)
    card = read_card(path)
    inputs = keras.Input((None, None, 3))
    head = keras.layers.Conv2D(len(LESION_CLASSES), 3, padding="same", activation="sigmoid")
    model = keras.Model(inputs, head(inputs))
    kernel = np.zeros((3, 3, 3, len(LESION_CLASSES)), np.float32)
    kernel[1, 0, 1, :] = 1 / 6.0
    head.set_weights([kernel, np.full(len(LESION_CLASSES), -55 / 6.0, np.float32)])
    model.save(path)
    write_card(path, card)
    return path, model
