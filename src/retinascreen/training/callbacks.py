"""What runs during ``fit``: the QWK training metric and the per-epoch callbacks.

:class:`QuadraticKappa` is registered as ``retinascreen>QuadraticKappa``: ``last.keras`` files
(compiled models) name it, so the registration must not change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
from keras import ops

from retinascreen.grading import N_CLASSES
from retinascreen.models.metrics import quadratic_kappa
from retinascreen.training.config import TrainConfig
from retinascreen.training.evaluation import predict_dataset
from retinascreen.training.run import (
    BEST_MODEL_FILE,
    LAST_MODEL_FILE,
    LAST_MODEL_TMP_FILE,
    RunState,
)


@keras.saving.register_keras_serializable(package="retinascreen", name="QuadraticKappa")
class QuadraticKappa(keras.metrics.Metric):
    """Quadratic weighted kappa accumulated over batches from a 5x5 confusion matrix.

    ``ordinal=True`` reads predictions as regression scores rounded to the nearest grade.
    """

    def __init__(self, name: str = "qwk", ordinal: bool = False, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self.ordinal = bool(ordinal)
        self.matrix = self.add_variable(
            shape=(N_CLASSES, N_CLASSES), initializer="zeros", name="matrix", dtype="float32"
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:  # noqa: ARG002
        truth = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        if self.ordinal:
            grade = ops.clip(
                ops.round(ops.reshape(ops.cast(y_pred, "float32"), (-1,))), 0, N_CLASSES - 1
            )
            pred = ops.cast(grade, "int32")
        else:
            pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        index = truth * N_CLASSES + pred
        counts = ops.sum(ops.one_hot(index, N_CLASSES * N_CLASSES, dtype="float32"), axis=0)
        self.matrix.assign_add(ops.reshape(counts, (N_CLASSES, N_CLASSES)))

    def result(self) -> Any:
        grades = ops.arange(N_CLASSES, dtype="float32")
        weights = ops.square(ops.expand_dims(grades, 1) - ops.expand_dims(grades, 0))
        total = ops.maximum(ops.sum(self.matrix), 1.0)
        expected = ops.outer(ops.sum(self.matrix, axis=1), ops.sum(self.matrix, axis=0)) / total
        denominator = ops.sum(weights * expected)
        kappa = 1.0 - ops.sum(weights * self.matrix) / ops.maximum(denominator, 1e-9)
        return ops.where(denominator > 0, kappa, 0.0)

    def reset_state(self) -> None:
        self.matrix.assign(ops.zeros((N_CLASSES, N_CLASSES), dtype="float32"))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "ordinal": self.ordinal}


class ValidationCheckpoint(keras.callbacks.Callback):
    """QWK, loss and accuracy on the validation split each epoch; saves ``best.keras``.

    Regression models' QWK uses thresholds tuned on the validation scores, as at the end.

    ``deployable`` turns the model being trained into the one saved (five probabilities, no
    optimizer); the best QWK and its epoch go into ``state``.
    """

    def __init__(
        self,
        val_ds: Any,
        config: TrainConfig,
        run_dir: Path,
        state: RunState,
        deployable: Callable[[Any], Any],
    ) -> None:
        super().__init__()
        self.val_ds, self.config, self.run_dir, self.state = val_ds, config, run_dir, state
        self.deployable = deployable
        self.ordinal = config.objective == "ordinal"
        self.loss = (
            keras.losses.MeanSquaredError()
            if self.ordinal
            else keras.losses.SparseCategoricalCrossentropy()
        )
        if self.ordinal:
            from retinascreen.models.ordinal import regression_loss

            self.loss = regression_loss(config.regression_loss)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        y, out = predict_dataset(self.model, self.val_ds)
        if self.ordinal:
            from retinascreen.models.ordinal import optimise_thresholds, scores_to_grades

            # Judged with the thresholds the finished model will get (tuned on validation):
            # fixed 0.5-steps can hide a model whose scores are well ordered but shifted.
            scores = out.reshape(-1)
            pred = scores_to_grades(scores, optimise_thresholds(y, scores, rounds=3, grid=30))
            loss = self.loss(y.astype("float32"), scores.astype("float32"))
        else:
            pred = out.argmax(axis=1)
            loss = self.loss(y, out.astype("float32"))
        qwk = quadratic_kappa(y, pred)
        logs["val_loss"] = float(keras.ops.convert_to_numpy(loss))
        logs["val_qwk"] = qwk
        logs["val_accuracy"] = float((pred == y).mean())
        logs["learning_rate"] = float(
            keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        )
        best = self.state.best_qwk
        if best is None or qwk > best:
            self.state.best_qwk, self.state.best_epoch = qwk, epoch + 1
            self.deployable(self.model).save(self.run_dir / BEST_MODEL_FILE)


class SaveProgress(keras.callbacks.Callback):
    """After each epoch: ``last.keras`` (with optimizer state) then ``state.json``."""

    def __init__(self, run_dir: Path, state: RunState) -> None:
        super().__init__()
        self.run_dir, self.state = run_dir, state

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        tmp = self.run_dir / LAST_MODEL_TMP_FILE
        self.model.save(tmp)
        tmp.replace(self.run_dir / LAST_MODEL_FILE)
        self.state.end_epoch(epoch + 1)
        self.state.save(self.run_dir)


__all__ = ["QuadraticKappa", "SaveProgress", "ValidationCheckpoint"]
