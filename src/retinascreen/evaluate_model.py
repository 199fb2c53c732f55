"""Evaluate a saved model (``.keras``, ``.onnx`` or run directory) on a graded data set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.config import TrainConfig, load_config
from retinascreen.errors import ConfigError, DatasetError, ModelError
from retinascreen.evaluation import choose_threshold, write_evaluation

SPLITS = ("train", "val", "test", "all")


def _run_config(model_path: Path) -> TrainConfig | None:
    """The training config beside a model (its run directory), if there is one."""
    for folder in (model_path, model_path.parent):
        if folder.is_dir() and (folder / "config.toml").is_file():
            return load_config(folder / "config.toml")
    return None


def _predict(predictor, records, preprocessing, batch_size: int, cache_dir):
    from retinascreen.pipeline import make_dataset

    ds = make_dataset(
        records,
        preprocessing=preprocessing,
        batch_size=batch_size,
        training=False,
        cache_dir=cache_dir,
    )
    labels, probs = [], []
    for images, y in ds:
        probs.append(np.asarray(predictor.predict_arrays(np.asarray(images)), dtype=np.float64))
        labels.append(np.asarray(y))
    return np.concatenate(labels).astype(int), np.concatenate(probs)


def evaluate_model(
    model: str | Path,
    data: str | Path,
    fmt: str,
    *,
    split: str = "test",
    out: str | Path | None = None,
    target_sensitivity: float | None = None,
    batch_size: int = 16,
    cache_dir: str | Path | None = None,
) -> tuple[dict[str, Any], Path]:
    """Write ``metrics.json``, ``confusion.png``, ``roc.png``; return ``(metrics, out_dir)``."""
    import retinascreen.ordinal  # noqa: F401  (registers OrdinalProbabilities for loading)
    from retinascreen.datasets import load_dataset, split_dataset
    from retinascreen.inference import Predictor

    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    model_path = Path(model).expanduser()
    if not model_path.exists():
        raise ModelError(f"model not found: {model_path}")
    predictor = Predictor(model_path, engine="keras" if model_path.suffix == ".keras" else "auto")
    card = predictor.card
    records = load_dataset(data, fmt)
    run_config = _run_config(model_path)
    settings = run_config or TrainConfig()
    if split == "all":
        chosen, val_records = records, []
    else:
        splits = split_dataset(records, val=settings.val, test=settings.test, seed=settings.seed)
        chosen, val_records = splits[split], splits["val"]
    if not chosen:
        raise DatasetError(f"the {split} split of {data} is empty ({len(records)} images in all)")

    card_threshold = card.extra.get("referable_threshold") if card is not None else None
    if target_sensitivity is not None:
        if not val_records:
            raise ConfigError("--target-sensitivity needs a validation split: use --split test")
        y_val, p_val = _predict(
            predictor, val_records, predictor.preprocessing, batch_size, cache_dir
        )
        threshold, rule = choose_threshold(y_val, p_val, target_sensitivity)
    elif card_threshold is not None:
        threshold, rule = float(card_threshold), "the model card's referable threshold"
    else:
        threshold, rule = choose_threshold(None, None, None)

    y, p = _predict(predictor, chosen, predictor.preprocessing, batch_size, cache_dir)
    out_dir = (
        Path(out)
        if out
        else ((model_path if model_path.is_dir() else model_path.parent) / f"eval-{split}")
    )
    extra = {
        "split": split,
        "data": str(data),
        "format": fmt,
        "model": {"path": str(predictor.model_path), **predictor.model_info},
    }
    metrics = write_evaluation(
        y,
        p,
        out_dir,
        threshold=threshold,
        threshold_rule=rule,
        target_sensitivity=target_sensitivity,
        extra=extra,
    )
    return metrics, out_dir
