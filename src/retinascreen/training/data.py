"""The data of a training run: records split and checked, tf.data sets, class weights.

Problems with the data (missing files, unknown labels, an empty split) are raised here, before
anything is trained.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.data.datasets import Record
from retinascreen.data.formats import BENCHMARK_MANIFEST, SYNTHETIC_MANIFEST
from retinascreen.data.fundus import Preprocessing
from retinascreen.errors import DatasetError
from retinascreen.grading import N_CLASSES
from retinascreen.training.config import TrainConfig

Splits = dict[str, list[Record]]
SYNTHETIC_MARKERS = (BENCHMARK_MANIFEST, SYNTHETIC_MANIFEST)


def load_splits(config: TrainConfig, log: Callable[[str], None]) -> Splits:
    """The records of ``config.data`` split train/val/test; an empty train or val split raises."""
    from retinascreen.data.datasets import describe, load_dataset, split_dataset

    records = load_dataset(config.data, config.format)
    if not records:
        raise DatasetError(f"{config.data}: the data set has no gradable images")
    splits = split_dataset(records, val=config.val, test=config.test, seed=config.data_split_seed)
    if config.train_limit and len(splits["train"]) > config.train_limit:
        # A fixed subset (not seed-dependent), so runs that differ only in seed see the same data.
        splits["train"] = random.Random(0).sample(splits["train"], config.train_limit)
    log(describe(records))
    log("split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    for name in ("train", "val"):
        if not splits[name]:
            raise DatasetError(
                f"the {name} split is empty ({len(records)} images in all): add images or "
                "change the val/test fractions"
            )
    return splits


@dataclass(frozen=True)
class SplitDatasets:
    """The tf.data sets of the splits (``test`` None when that split is empty)."""

    preprocessing: Preprocessing
    train: Any
    val: Any
    test: Any | None


def make_datasets(config: TrainConfig, splits: Splits) -> SplitDatasets:
    """Batched ``(images, labels)`` sets; only the training one shuffles and augments.

    With ``config.camera_variants`` the training set also shows raw-camera versions of its
    photos (:mod:`retinascreen.training.camera_variants`).
    """
    from retinascreen.data.pipeline import make_dataset

    preprocessing = Preprocessing(config.size, config.ben_graham, config.clahe, config.equalize)
    common: dict[str, Any] = {
        "preprocessing": preprocessing,
        "batch_size": config.batch_size,
        "cache_dir": config.cache_dir,
        "seed": config.seed,
    }
    alternatives = None
    if config.camera_variants:
        from retinascreen.training.camera_variants import cache_camera_variants

        alternatives = cache_camera_variants(
            splits["train"], preprocessing, config.camera_variants, config.cache_dir
        )
    train_ds = make_dataset(splits["train"], training=True, alternatives=alternatives, **common)
    val_ds = make_dataset(splits["val"], training=False, **common)
    test_ds = make_dataset(splits["test"], training=False, **common) if splits["test"] else None
    return SplitDatasets(preprocessing, train_ds, val_ds, test_ds)


def class_weight_table(grades: list[int]) -> dict[int, float]:
    """Balanced weights per grade (scikit-learn); grades absent from training weigh 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(grades)
    weights = compute_class_weight("balanced", classes=present, y=np.asarray(grades))
    table = {g: 1.0 for g in range(N_CLASSES)}
    table.update({int(g): float(w) for g, w in zip(present, weights, strict=True)})
    return table


def training_dataset(ds: Any, config: TrainConfig, weights: dict[int, float] | None) -> Any:
    """``(images, target, sample weight)``: float grades for the ordinal objective."""
    import tensorflow as tf

    ordinal = config.objective == "ordinal"
    table = tf.constant(
        [weights[g] for g in range(N_CLASSES)] if weights else [1.0] * N_CLASSES, dtype=tf.float32
    )

    def shape(images: Any, labels: Any) -> tuple[Any, Any, Any]:
        target = tf.cast(labels, tf.float32) if ordinal else labels
        return images, target, tf.gather(table, labels)

    return ds.map(shape, num_parallel_calls=tf.data.AUTOTUNE)


def describe_training_data(config: TrainConfig, n_train: int) -> tuple[str, bool]:
    """A model-card line about the training data and whether it is synthetic.

    Data written by ``retinascreen.synthetic`` carries ``manifest.json`` (benchmarks) or
    ``synthetic.json`` (``retinascreen synth``) naming the generator.
    """
    root = Path(config.data)
    root = root if root.is_dir() else root.parent
    for marker in SYNTHETIC_MARKERS:
        path = root / marker
        if not path.is_file():
            continue
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(manifest, dict) and "synthetic" in str(manifest.get("generator", "")):
            name = manifest.get("name") or f"retinascreen synth (seed {manifest.get('seed', '?')})"
            return f"{name} (synthetic images, not clinical); {n_train} training images", True
    return f"{root.name} ({config.format} layout); {n_train} training images", False


__all__ = [
    "SplitDatasets",
    "Splits",
    "class_weight_table",
    "describe_training_data",
    "load_splits",
    "make_datasets",
    "training_dataset",
]
