"""``retinascreen evaluate``: grade a data set's split with a saved model and write its metrics.

:func:`evaluate_model` runs a ``.keras``, ``.onnx`` or run directory through the
:class:`~retinascreen.serving.predictor.Predictor` (the card's pre-processing, calibration and
threshold, as in use) and writes ``metrics.json``, ``confusion.png`` and ``roc.png`` with
:func:`retinascreen.training.evaluation.write_evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen.data.datasets import EVALUATION_SPLITS as SPLITS
from retinascreen.errors import ConfigError, DatasetError, ModelError
from retinascreen.grading import grade_rule
from retinascreen.training.config import TrainConfig, load_config
from retinascreen.training.evaluation import (
    PredictFn,
    choose_threshold,
    predict_dataset,
    summary,
    write_evaluation,
)
from retinascreen.training.run import CONFIG_FILE

__all__ = ["evaluate_model", "summary"]


def _run_config(model_path: Path) -> TrainConfig | None:
    """The training config beside a model (its run directory), if there is one."""
    for folder in (model_path, model_path.parent):
        if folder.is_dir() and (folder / CONFIG_FILE).is_file():
            return load_config(folder / CONFIG_FILE)
    return None


def _predict_records(
    predict: PredictFn,
    records: Sequence[Any],
    preprocessing: Any,
    batch_size: int,
    cache_dir: str | Path | None,
) -> tuple[np.ndarray, np.ndarray]:
    from retinascreen.data.pipeline import make_dataset

    ds = make_dataset(
        records,
        preprocessing=preprocessing,
        batch_size=batch_size,
        training=False,
        cache_dir=cache_dir,
    )
    return predict_dataset(predict, ds)


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
    from retinascreen.data.datasets import load_dataset, split_dataset
    from retinascreen.serving.predictor import Predictor

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
        splits = split_dataset(
            records, val=settings.val, test=settings.test, seed=settings.data_split_seed
        )
        chosen, val_records = splits[split], splits["val"]
    if not chosen:
        raise DatasetError(f"the {split} split of {data} is empty ({len(records)} images in all)")

    card_threshold = card.extra.get("referable_threshold") if card is not None else None
    predict = predictor.predict_arrays
    if target_sensitivity is not None:
        if not val_records:
            raise ConfigError("--target-sensitivity needs a validation split: use --split test")
        y_val, p_val = _predict_records(
            predict, val_records, predictor.preprocessing, batch_size, cache_dir
        )
        threshold, rule = choose_threshold(y_val, p_val, target_sensitivity)
    elif card_threshold is not None:
        threshold, rule = float(card_threshold), "the model card's referable threshold"
    else:
        threshold, rule = choose_threshold(None, None, None)

    y, p = _predict_records(predict, chosen, predictor.preprocessing, batch_size, cache_dir)
    out_dir = (
        Path(out)
        if out
        else ((model_path if model_path.is_dir() else model_path.parent) / f"eval-{split}")
    )
    extra = {
        "split": split,
        "data": str(data),
        "format": fmt,
        "model": {"path": str(predictor.model_path), **predictor.model_info.to_dict()},
    }
    metrics = write_evaluation(
        y,
        p,
        out_dir,
        threshold=threshold,
        threshold_rule=rule,
        target_sensitivity=target_sensitivity,
        extra=extra,
        grade_rule=grade_rule(card.objective if card is not None else None),
    )
    return metrics, out_dir
