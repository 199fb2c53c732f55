"""Train a DR grading model into a run directory, resumably.

``train(config)`` loads and splits the data (problems are reported before any training),
builds backbone + head, and trains in phases: with pretrained weights the head first on a
frozen backbone, then the top of the backbone at a lower learning rate with BatchNormalization
kept frozen (the seeds' fine-tuning advice); from scratch (``weights="none"``, e.g.
``mini_xception``) everything in one phase. Each epoch computes QWK on the validation split,
keeps the best model as ``best.keras``, and saves ``last.keras`` + ``state.json`` so that an
interrupted run continues where it stopped when ``train`` is called again with the same
configuration. Finally the best model is evaluated on the test split and described by a model
card.

Run directory: ``config.toml``, ``history.csv``, ``best.keras``, ``last.keras``, ``state.json``,
``metrics.json``, ``curves.png``, ``confusion.png``, ``roc.png``, ``model_card.json``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retinascreen._backend import ensure_backend
from retinascreen.config import TrainConfig, load_config, write_config
from retinascreen.errors import ConfigError, DatasetError
from retinascreen.evaluation import (
    choose_threshold,
    load_keras_model,
    predict_dataset,
    progress_verbosity,
    summary,
    write_evaluation,
)
from retinascreen.grading import N_CLASSES
from retinascreen.metrics import plot_curves, quadratic_kappa

ensure_backend()

import keras  # noqa: E402
from keras import ops  # noqa: E402

RUN_FILES = (
    "best.keras",
    "last.keras",
    "state.json",
    "config.toml",
    "history.csv",
    "metrics.json",
    "curves.png",
    "confusion.png",
    "roc.png",
    "model_card.json",
)
NO_PRETRAINED = ("mini_xception",)
FROM_SCRATCH_BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class Phase:
    """One stage of the schedule: ``name`` is a models.build.set_trainable phase."""

    name: str
    epochs: int
    lr: float


def plan_phases(config: TrainConfig) -> list[Phase]:
    """Head then fine-tune for pretrained weights; one full phase when training from scratch."""
    if str(config.weights).lower() == "none":
        return [Phase("full", config.epochs, config.lr)]
    phases = [Phase("head", config.epochs, config.lr)]
    if config.fine_tune_epochs > 0:
        phases.append(Phase("finetune", config.fine_tune_epochs, config.fine_tune_lr))
    return phases


# -- QWK as a Keras metric (training curves) -------------------------------------------------


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

    def update_state(self, y_true, y_pred, sample_weight=None):  # noqa: ARG002
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

    def result(self):
        grades = ops.arange(N_CLASSES, dtype="float32")
        weights = ops.square(ops.expand_dims(grades, 1) - ops.expand_dims(grades, 0))
        total = ops.maximum(ops.sum(self.matrix), 1.0)
        expected = ops.outer(ops.sum(self.matrix, axis=1), ops.sum(self.matrix, axis=0)) / total
        denominator = ops.sum(weights * expected)
        kappa = 1.0 - ops.sum(weights * self.matrix) / ops.maximum(denominator, 1e-9)
        return ops.where(denominator > 0, kappa, 0.0)

    def reset_state(self):
        self.matrix.assign(ops.zeros((N_CLASSES, N_CLASSES), dtype="float32"))

    def get_config(self):
        return {**super().get_config(), "ordinal": self.ordinal}


# -- run directory state -------------------------------------------------------------------


def _read_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "state.json"
    if not path.is_file():
        return {"epoch": 0, "phases": [], "best_qwk": None, "best_epoch": None}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = run_dir / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / "state.json")


def _prepare_run_dir(run_dir: Path, config: TrainConfig, overwrite: bool) -> None:
    """Start, resume, or refuse: an existing run with another configuration needs ``overwrite``."""
    previous_file = run_dir / "config.toml"
    if previous_file.is_file() and overwrite:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
    elif previous_file.is_file():
        previous = load_config(previous_file)
        mine, theirs = config.identity(), previous.identity()
        changed = sorted(k for k in mine if mine[k] != theirs.get(k))
        if changed:
            detail = ", ".join(f"{k}: {theirs.get(k)!r} -> {mine[k]!r}" for k in changed)
            raise ConfigError(
                f"{run_dir} holds a run with another configuration ({detail}); "
                "use --overwrite to start it again, or choose another --out"
            )
    run_dir.mkdir(parents=True, exist_ok=True)


# -- data ----------------------------------------------------------------------------------


def _load_splits(config: TrainConfig, log: Callable[[str], None]) -> dict[str, list]:
    from retinascreen.datasets import describe, load_dataset, split_dataset

    records = load_dataset(config.data, config.format)
    if not records:
        raise DatasetError(f"{config.data}: the data set has no gradable images")
    splits = split_dataset(records, val=config.val, test=config.test, seed=config.seed)
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


def class_weight_table(grades: list[int]) -> dict[int, float]:
    """Balanced weights per grade (scikit-learn); grades absent from training weigh 1."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(grades)
    weights = compute_class_weight("balanced", classes=present, y=np.asarray(grades))
    table = {g: 1.0 for g in range(N_CLASSES)}
    table.update({int(g): float(w) for g, w in zip(present, weights, strict=True)})
    return table


def _training_dataset(ds, config: TrainConfig, weights: dict[int, float] | None):
    import tensorflow as tf

    ordinal = config.objective == "ordinal"
    table = tf.constant(
        [weights[g] for g in range(N_CLASSES)] if weights else [1.0] * N_CLASSES, dtype=tf.float32
    )

    def shape(images, labels):
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
    for marker in ("manifest.json", "synthetic.json"):
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


# -- model ---------------------------------------------------------------------------------


def _build(config: TrainConfig, mean_grade: float = 0.0):
    from retinascreen.models.build import build_model

    weights = config.weights
    model = build_model(
        config.backbone,
        config.head,
        config.size,
        N_CLASSES,
        weights,
        widths=tuple(config.widths) if config.widths else None,
        stem_stride=config.stem_stride,
        dropout=config.dropout,
    )
    if str(weights).lower() == "none":
        # From scratch, short CPU runs take only tens of steps: with Keras's default momentum
        # (0.99) the BatchNormalization moving statistics would still be mostly their initial
        # values, so the model in inference mode (validation, saved model) predicts one grade.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = FROM_SCRATCH_BN_MOMENTUM
    if config.objective == "ordinal":
        features = model.get_layer("predictions").input
        # Start the regression at the mean training grade rather than at 0.
        score = keras.layers.Dense(
            1,
            dtype="float32",
            name="score",
            bias_initializer=keras.initializers.Constant(mean_grade),
        )(features)
        model = keras.Model(model.inputs, score, name=model.name)
    return model


def _compile(model, config: TrainConfig, lr: float) -> None:
    if config.objective == "ordinal":
        from retinascreen.ordinal import regression_loss

        loss = regression_loss(config.regression_loss)
        metrics = [QuadraticKappa(ordinal=True)]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [QuadraticKappa(), keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss, metrics=metrics)


def deployable(model, config: TrainConfig):
    """The model a consumer loads: five probabilities, no optimizer (shares ``model``'s layers)."""
    if config.objective == "ordinal":
        from retinascreen.ordinal import with_probabilities

        return with_probabilities(model)
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _copy_matching_weights(source, target) -> None:
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if layer.name in by_name and layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())


# -- callbacks -----------------------------------------------------------------------------


class ValidationCheckpoint(keras.callbacks.Callback):
    """QWK, loss and accuracy on the validation split each epoch; saves ``best.keras``."""

    def __init__(self, val_ds, config: TrainConfig, run_dir: Path, state: dict[str, Any]):
        super().__init__()
        self.val_ds, self.config, self.run_dir, self.state = val_ds, config, run_dir, state
        self.ordinal = config.objective == "ordinal"
        self.loss = (
            keras.losses.MeanSquaredError()
            if self.ordinal
            else keras.losses.SparseCategoricalCrossentropy()
        )
        if self.ordinal:
            from retinascreen.ordinal import regression_loss

            self.loss = regression_loss(config.regression_loss)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs if logs is not None else {}
        y, out = predict_dataset(self.model, self.val_ds)
        if self.ordinal:
            from retinascreen.ordinal import scores_to_grades

            scores = out.reshape(-1)
            pred = scores_to_grades(scores)
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
        best = self.state.get("best_qwk")
        if best is None or qwk > best:
            self.state["best_qwk"], self.state["best_epoch"] = qwk, epoch + 1
            deployable(self.model, self.config).save(self.run_dir / "best.keras")


class SaveProgress(keras.callbacks.Callback):
    """After each epoch: ``last.keras`` (with optimizer state) then ``state.json``."""

    def __init__(self, run_dir: Path, state: dict[str, Any]):
        super().__init__()
        self.run_dir, self.state = run_dir, state

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        tmp = self.run_dir / "last.tmp.keras"
        self.model.save(tmp)
        tmp.replace(self.run_dir / "last.keras")
        self.state["epoch"] = epoch + 1
        self.state["phases"][-1]["end"] = epoch + 1
        _write_state(self.run_dir, self.state)


# -- the run -------------------------------------------------------------------------------


def _strategy(config: TrainConfig):
    import tensorflow as tf

    if config.distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def resolve(config: TrainConfig) -> TrainConfig:
    """Absolute paths, and no ImageNet weights for backbones that have none."""
    changes: dict[str, Any] = {
        "data": str(Path(config.data).expanduser().resolve()),
        "out": str(Path(config.out).expanduser().resolve()),
    }
    if config.backbone in NO_PRETRAINED and str(config.weights).lower() == "imagenet":
        changes["weights"] = "none"
    if config.cache_dir:
        changes["cache_dir"] = str(Path(config.cache_dir).expanduser().resolve())
    return config.replace(**changes)


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Any] = (),
) -> Path:
    """Train (or resume) the run described by ``config``; returns the run directory.

    ``callbacks`` are extra Keras callbacks, run after the built-in ones each epoch.
    """
    config = resolve(config.validate())
    run_dir = Path(config.out)
    _prepare_run_dir(run_dir, config, overwrite)
    splits = _load_splits(config, log)
    write_config(config, run_dir / "config.toml")

    previous_policy = keras.mixed_precision.global_policy().name
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        _fit(config, run_dir, splits, log, list(callbacks))
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    _finish(config, run_dir, splits, log)
    return run_dir


def _datasets(config: TrainConfig, splits: dict[str, list]):
    from retinascreen.fundus import Preprocessing
    from retinascreen.pipeline import make_dataset

    preprocessing = Preprocessing(config.size, config.ben_graham, config.clahe)
    common = {
        "preprocessing": preprocessing,
        "batch_size": config.batch_size,
        "cache_dir": config.cache_dir,
        "seed": config.seed,
    }
    train_ds = make_dataset(splits["train"], training=True, **common)
    val_ds = make_dataset(splits["val"], training=False, **common)
    test_ds = make_dataset(splits["test"], training=False, **common) if splits["test"] else None
    return preprocessing, train_ds, val_ds, test_ds


def _fit(config: TrainConfig, run_dir: Path, splits: dict[str, list], log, extra: list) -> None:
    keras.utils.set_random_seed(config.seed)
    _, train_ds, val_ds, _ = _datasets(config, splits)
    weights = (
        class_weight_table([r.grade for r in splits["train"]]) if config.class_weights else None
    )
    train_ds = _training_dataset(train_ds, config, weights)
    state = _read_state(run_dir)
    phases = plan_phases(config)
    verbose = progress_verbosity()
    model = None
    strategy = _strategy(config)
    for index, phase in enumerate(phases):
        record = state["phases"][index] if index < len(state["phases"]) else None
        later_started = len(state["phases"]) > index + 1
        if record and (
            later_started
            or record.get("stopped_early")
            or record["end"] - record["start"] >= phase.epochs
        ):
            continue
        with strategy.scope():
            if record:  # resume inside this phase, optimizer state included
                model = keras.saving.load_model(run_dir / "last.keras")
                log(f"resuming phase {phase.name!r} at epoch {state['epoch'] + 1}")
                end = record["start"] + phase.epochs
            else:
                if model is None:
                    last = run_dir / "last.keras"
                    mean_grade = float(np.mean([r.grade for r in splits["train"]]))
                    model = (
                        keras.saving.load_model(last, compile=False)
                        if last.is_file()
                        else _build(config, mean_grade)
                    )
                if (run_dir / "best.keras").is_file() and index > 0:
                    _copy_matching_weights(load_keras_model(run_dir / "best.keras"), model)
                from retinascreen.models.build import set_trainable

                set_trainable(model, phase.name, unfreeze_top=config.unfreeze_top)
                _compile(model, config, phase.lr)
                record = {
                    "name": phase.name,
                    "start": state["epoch"],
                    "end": state["epoch"],
                    "stopped_early": False,
                }
                state["phases"].append(record)
                _write_state(run_dir, state)
                end = state["epoch"] + phase.epochs
                log(f"phase {phase.name!r}: epochs {state['epoch'] + 1}..{end}, lr {phase.lr:g}")
        stopper = keras.callbacks.EarlyStopping(
            monitor="val_qwk", mode="max", patience=max(config.patience, 1), min_delta=1e-4
        )
        callbacks = [
            ValidationCheckpoint(val_ds, config, run_dir, state),
            stopper,
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_qwk",
                mode="max",
                factor=0.5,
                patience=max(2, config.patience // 2) if config.patience else 3,
                min_lr=1e-7,
                verbose=1,
            ),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
            SaveProgress(run_dir, state),
            *extra,
        ]
        if config.patience == 0:
            callbacks.remove(stopper)
        model.fit(
            train_ds, initial_epoch=state["epoch"], epochs=end, callbacks=callbacks, verbose=verbose
        )
        record["stopped_early"] = bool(config.patience and stopper.stopped_epoch > 0)
        _write_state(run_dir, state)


def _finish(config: TrainConfig, run_dir: Path, splits: dict[str, list], log) -> dict[str, Any]:
    """Tune ordinal thresholds, evaluate ``best.keras`` and write the figures and model card."""
    from retinascreen.modelcard import ModelCard, write_card
    from retinascreen.models.build import count_params

    preprocessing, _, val_ds, test_ds = _datasets(config, splits)
    best_path = run_dir / "best.keras"
    model = load_keras_model(best_path)
    ordinal_info: dict[str, Any] = {}
    thresholds = None
    if config.objective == "ordinal":
        from retinascreen.ordinal import fit_ordinal, scores_model, with_probabilities

        scorer = scores_model(model)
        y_val, scores = predict_dataset(scorer, val_ds)
        found, temperature = fit_ordinal(y_val, scores.reshape(-1))
        model = with_probabilities(scorer, found, temperature)
        model.save(best_path)
        thresholds = list(found)
        ordinal_info = {"thresholds": thresholds, "temperature": temperature}
        log(
            "ordinal thresholds tuned on validation: "
            + ", ".join(f"{t:.3f}" for t in found)
            + f" (temperature {temperature:.3f})"
        )

    y_val, p_val = predict_dataset(model, val_ds)
    threshold, rule = choose_threshold(y_val, p_val, config.target_sensitivity)
    split_name, eval_ds = ("test", test_ds) if test_ds is not None else ("val", val_ds)
    y_eval, p_eval = predict_dataset(model, eval_ds)
    state = _read_state(run_dir)
    extra = {
        "split": split_name,
        "val_qwk": quadratic_kappa(y_val, p_val.argmax(axis=1)),
        "best_epoch": state.get("best_epoch"),
        "epochs_trained": state.get("epoch"),
    }
    if ordinal_info:
        extra["ordinal"] = ordinal_info
    metrics = write_evaluation(
        y_eval,
        p_eval,
        run_dir,
        threshold=threshold,
        threshold_rule=rule,
        target_sensitivity=config.target_sensitivity,
        extra=extra,
    )
    if (run_dir / "history.csv").is_file():
        plot_curves(run_dir / "history.csv", run_dir / "curves.png")
    description, synthetic = describe_training_data(config, len(splits["train"]))
    card = ModelCard(
        name=run_dir.name,
        version="1",
        backbone=config.backbone,
        head=config.head,
        input_size=config.size,
        preprocessing=preprocessing.to_dict(),
        objective=config.objective,
        thresholds=thresholds,
        training_data=description,
        metrics={k: metrics[k] for k in ("qwk", "accuracy", "macro_f1", "referable", "n", "split")},
        synthetic=synthetic,
        extra={
            "referable_threshold": threshold,
            "temperature": ordinal_info.get("temperature"),
            "params": count_params(model),
            "weights": config.weights,
            "config": {
                k: v for k, v in config.to_dict().items() if k not in ("data", "out", "cache_dir")
            },
        },
    )
    write_card(best_path, card)
    (run_dir / "model_card.json").write_text(card.to_json() + "\n", encoding="utf-8")
    log(f"{split_name} split: " + summary(metrics))
    log(f"run directory: {run_dir}")
    return metrics


__all__ = [
    "Phase",
    "QuadraticKappa",
    "TrainConfig",
    "class_weight_table",
    "deployable",
    "plan_phases",
    "resolve",
    "train",
]
