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

The run directory's files and state are :mod:`retinascreen.training.run`; the metric and
callbacks :mod:`retinascreen.training.callbacks`; the data :mod:`retinascreen.training.data`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from retinascreen.grading import N_CLASSES, grade_rule, predicted_grades
from retinascreen.models.backbones import BACKBONES
from retinascreen.models.engines import load_keras_model
from retinascreen.models.metrics import (
    bootstrap_intervals,
    expected_calibration_error,
    plot_curves,
    quadratic_kappa,
    referable_operating_point,
    referable_scores,
)
from retinascreen.training.callbacks import QuadraticKappa, SaveProgress, ValidationCheckpoint
from retinascreen.training.config import TrainConfig, write_config
from retinascreen.training.data import (
    SplitDatasets,
    Splits,
    class_weight_table,
    describe_training_data,
    load_splits,
    make_datasets,
    training_dataset,
)
from retinascreen.training.evaluation import (
    choose_threshold,
    predict_dataset,
    progress_verbosity,
    summary,
    write_evaluation,
)
from retinascreen.training.run import (
    BEST_MODEL_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    LAST_MODEL_FILE,
    MODEL_CARD_FILE,
    PhaseRecord,
    RunState,
    prepare_run_dir,
)

FROM_SCRATCH_BN_MOMENTUM = 0.9


@dataclass(frozen=True)
class Phase:
    """One stage of the schedule: ``name`` is a models.build.set_trainable phase."""

    name: str
    epochs: int
    lr: float


def plan_phases(config: TrainConfig) -> list[Phase]:
    """Head then fine-tune for pretrained weights; one full phase when training from scratch.

    ``schedule = "full"`` trains everything in one phase from the given weights too (our own
    synthetic pre-training: BatchNormalization statistics must move to the new photos).
    """
    if str(config.weights).lower() == "none" or config.schedule == "full":
        return [Phase("full", config.epochs, config.lr)]
    phases = [Phase("head", config.epochs, config.lr)]
    if config.fine_tune_epochs > 0:
        phases.append(Phase("finetune", config.fine_tune_epochs, config.fine_tune_lr))
    return phases


# -- model ---------------------------------------------------------------------------------


def _build(config: TrainConfig, mean_grade: float = 0.0) -> Any:
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


def _compile(model: Any, config: TrainConfig, lr: float) -> None:
    if config.objective == "ordinal":
        from retinascreen.models.ordinal import regression_loss

        loss = regression_loss(config.regression_loss)
        metrics = [QuadraticKappa(ordinal=True)]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [QuadraticKappa(), keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr), loss=loss, metrics=metrics)


def deployable(model: Any, config: TrainConfig) -> Any:
    """The model a consumer loads: five probabilities, no optimizer (shares ``model``'s layers)."""
    if config.objective == "ordinal":
        from retinascreen.models.ordinal import with_probabilities

        return with_probabilities(model)
    return keras.Model(model.inputs, model.outputs, name=model.name)


def _copy_matching_weights(source: Any, target: Any) -> None:
    by_name = {layer.name: layer for layer in source.layers}
    for layer in target.layers:
        if layer.name in by_name and layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())


# -- the run -------------------------------------------------------------------------------


def _strategy(config: TrainConfig) -> Any:
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
    spec = BACKBONES.get(config.backbone)
    if spec is not None and not spec.pretrained and str(config.weights).lower() == "imagenet":
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
    prepare_run_dir(run_dir, config, overwrite)
    splits = load_splits(config, log)
    write_config(config, run_dir / CONFIG_FILE)

    previous_policy = keras.mixed_precision.global_policy().name
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        _fit(config, run_dir, splits, log, list(callbacks))
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    _finish(config, run_dir, splits, log)
    return run_dir


def _start_phase(
    model: Any,
    config: TrainConfig,
    run_dir: Path,
    splits: Splits,
    state: RunState,
    phase: Phase,
    index: int,
) -> tuple[Any, PhaseRecord]:
    """The model set up and compiled for a phase not started yet, and the phase's new record."""
    from retinascreen.models.build import set_trainable

    if model is None:
        last = run_dir / LAST_MODEL_FILE
        mean_grade = float(np.mean([r.grade for r in splits["train"]]))
        model = (
            keras.saving.load_model(last, compile=False)
            if last.is_file()
            else _build(config, mean_grade)
        )
    if (run_dir / BEST_MODEL_FILE).is_file() and index > 0:
        _copy_matching_weights(load_keras_model(run_dir / BEST_MODEL_FILE), model)
    set_trainable(model, phase.name, unfreeze_top=config.unfreeze_top)
    _compile(model, config, phase.lr)
    record = state.start_phase(phase.name)
    state.save(run_dir)
    return model, record


def _callbacks(
    config: TrainConfig, run_dir: Path, state: RunState, val_ds: Any, extra: list[Any]
) -> tuple[list[Any], Any]:
    """The callbacks of one ``fit`` and its early stopper (not in the list when patience is 0)."""
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_qwk", mode="max", patience=max(config.patience, 1), min_delta=1e-4
    )
    callbacks = [
        ValidationCheckpoint(
            val_ds, config, run_dir, state, lambda model: deployable(model, config)
        ),
        stopper,
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_qwk",
            mode="max",
            factor=0.5,
            patience=max(2, config.patience // 2) if config.patience else 3,
            min_lr=1e-7,
            verbose=1,
        ),
        keras.callbacks.CSVLogger(str(run_dir / HISTORY_FILE), append=True),
        SaveProgress(run_dir, state),
        *extra,
    ]
    if config.patience == 0:
        callbacks.remove(stopper)
    return callbacks, stopper


def _fit_head_on_features(
    model: Any,
    config: TrainConfig,
    splits: Splits,
    datasets: SplitDatasets,
    weights: dict[int, float] | None,
    phase: Phase,
    log: Callable[[str], None],
) -> dict[str, float]:
    """Phase 1 on cached features: the frozen backbone runs once per photo, not once per epoch.

    The feature maps of the (unaugmented) training and validation crops are computed once,
    then the head alone (the layers after ``feature_map``, shared with ``model``) is trained on
    them for up to ``phase.epochs`` epochs, keeping the epoch of lowest validation loss. Far
    cheaper than the seeds' phase 1 on a CPU, and the head starts fine-tuning converged.
    """
    from retinascreen.data.pipeline import make_dataset
    from retinascreen.models.build import FEATURE_MAP_LAYER

    features = keras.Model(model.inputs, model.get_layer(FEATURE_MAP_LAYER).output)
    head = keras.Model(model.get_layer(FEATURE_MAP_LAYER).output, model.outputs)
    unaugmented_train = make_dataset(  # datasets.train shuffles and augments
        splits["train"],
        preprocessing=datasets.preprocessing,
        batch_size=config.batch_size,
        training=False,
        cache_dir=config.cache_dir,
    )
    cached: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, ds in (("train", unaugmented_train), ("val", datasets.val)):
        y, maps = predict_dataset(features, ds)
        cached[name] = (maps.astype(np.float32), y)
        log(f"cached {name} feature maps: {maps.shape}")

    def target(y: np.ndarray) -> np.ndarray:
        return y.astype(np.float32) if config.objective == "ordinal" else y

    _compile(head, config, phase.lr)
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=max(config.patience, 3), restore_best_weights=True
    )
    history = head.fit(
        cached["train"][0],
        target(cached["train"][1]),
        validation_data=(cached["val"][0], target(cached["val"][1])),
        sample_weight=(
            np.array([weights[int(g)] for g in cached["train"][1]]) if weights else None
        ),
        epochs=phase.epochs,
        batch_size=max(config.batch_size, 64),
        callbacks=[stopper],
        verbose=progress_verbosity(),
    )
    losses = history.history.get("val_loss", [float("nan")])
    log(f"head trained on cached features: {len(losses)} epochs, best val loss {min(losses):.4f}")
    return {"loss": float(min(history.history.get("loss", [float("nan")])))}


def _fit(
    config: TrainConfig,
    run_dir: Path,
    splits: Splits,
    log: Callable[[str], None],
    extra: list[Any],
) -> None:
    keras.utils.set_random_seed(config.seed)
    datasets = make_datasets(config, splits)
    weights = (
        class_weight_table([r.grade for r in splits["train"]]) if config.class_weights else None
    )
    train_ds = training_dataset(datasets.train, config, weights)
    state = RunState.load(run_dir)
    verbose = progress_verbosity()
    model = None
    strategy = _strategy(config)
    for index, phase in enumerate(plan_phases(config)):
        if state.phase_finished(index, phase.epochs):
            continue
        record = state.phase(index)
        with strategy.scope():
            if record:  # resume inside this phase, optimizer state included
                model = keras.saving.load_model(run_dir / LAST_MODEL_FILE)
                log(f"resuming phase {phase.name!r} at epoch {state.epoch + 1}")
                end = record.start + phase.epochs
            else:
                model, record = _start_phase(model, config, run_dir, splits, state, phase, index)
                end = state.epoch + phase.epochs
                log(f"phase {phase.name!r}: epochs {state.epoch + 1}..{end}, lr {phase.lr:g}")
        callbacks, stopper = _callbacks(config, run_dir, state, datasets.val, extra)
        if phase.name == "head" and config.head_on_features:
            logs = _fit_head_on_features(model, config, splits, datasets, weights, phase, log)
            # Checkpoint it as one epoch: best.keras, last.keras, history and state.
            callback_list = keras.callbacks.CallbackList(callbacks, model=model)
            callback_list.on_train_begin()
            callback_list.on_epoch_end(state.epoch, logs)
            callback_list.on_train_end()
            record.stopped_early = True  # finished: a resumed run goes on to fine-tuning
            state.save(run_dir)
            continue
        model.fit(
            train_ds, initial_epoch=state.epoch, epochs=end, callbacks=callbacks, verbose=verbose
        )
        record.stopped_early = bool(config.patience and stopper.stopped_epoch > 0)
        state.save(run_dir)


def _calibration(
    y_val: np.ndarray,
    p_val: np.ndarray,
    y_eval: np.ndarray,
    p_eval: np.ndarray,
    ordinal_info: dict[str, Any],
    scores: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Expected calibration error before and after the temperature fitted on validation.

    Regression models: "before" uses the thresholds tuned on validation with the default
    temperature, "after" the fitted one (the saved model's). Softmax models are reported as
    trained (no temperature is fitted for them).
    """
    from retinascreen.models.ordinal import DEFAULT_TEMPERATURE, ordinal_probabilities

    result: dict[str, Any] = {"bins": 15, "metric": "top-label expected calibration error"}
    if ordinal_info and "val" in scores:
        t = ordinal_info["thresholds"]
        before_val = ordinal_probabilities(scores["val"], t, DEFAULT_TEMPERATURE)
        result["temperature"] = ordinal_info["temperature"]
        result["val_ece_before"] = expected_calibration_error(y_val, before_val)
        if "eval" in scores:
            before = ordinal_probabilities(scores["eval"], t, DEFAULT_TEMPERATURE)
            result["ece_before"] = expected_calibration_error(y_eval, before)
    result["val_ece"] = expected_calibration_error(y_val, p_val)
    result["ece"] = expected_calibration_error(y_eval, p_eval)
    return result


def _finish(
    config: TrainConfig, run_dir: Path, splits: Splits, log: Callable[[str], None]
) -> dict[str, Any]:
    """Tune ordinal thresholds, evaluate ``best.keras`` and write the figures and model card.

    ``config.keep == "last"`` replaces ``best.keras`` by the last epoch's model first (for
    epochs whose purpose validation does not measure, such as raw-camera versions).
    """
    from retinascreen.models.build import count_params
    from retinascreen.models.modelcard import ModelCard, write_card

    datasets = make_datasets(config, splits)
    val_ds, test_ds = datasets.val, datasets.test
    best_path = run_dir / BEST_MODEL_FILE
    if config.keep == "last":
        last = keras.saving.load_model(run_dir / LAST_MODEL_FILE, compile=False)
        deployable(last, config).save(best_path)
        log(f"keeping the model of the last epoch ({RunState.load(run_dir).epoch})")
    model = load_keras_model(best_path)
    ordinal_info: dict[str, Any] = {}
    thresholds = None
    scorer_out: dict[str, np.ndarray] = {}
    if config.objective == "ordinal":
        from retinascreen.models.ordinal import fit_ordinal, scores_model, with_probabilities

        scorer = scores_model(model)
        y_val, scores = predict_dataset(scorer, val_ds)
        scorer_out["val"] = scores.reshape(-1)
        if test_ds is not None:
            scorer_out["eval"] = predict_dataset(scorer, test_ds)[1].reshape(-1)
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
    rule_of_grades = grade_rule(config.objective)
    val_grades = predicted_grades(p_val, rule_of_grades)
    threshold, rule = choose_threshold(y_val, p_val, config.target_sensitivity)
    split_name, eval_ds = ("test", test_ds) if test_ds is not None else ("val", val_ds)
    eval_records = splits["test"] if test_ds is not None else splits["val"]
    y_eval, p_eval = predict_dataset(model, eval_ds)
    state = RunState.load(run_dir)
    val_point = referable_operating_point(y_val, referable_scores(p_val), threshold)
    extra: dict[str, Any] = {
        "split": split_name,
        "val_qwk": quadratic_kappa(y_val, val_grades),
        "val": {
            "qwk": quadratic_kappa(y_val, val_grades),
            "referable_auc": val_point["auc"],
            "n": int(len(y_val)),
        },
        "best_epoch": state.best_epoch,
        "kept_epoch": state.epoch if config.keep == "last" else state.best_epoch,
        "epochs_trained": state.epoch,
        "calibration": _calibration(y_val, p_val, y_eval, p_eval, ordinal_info, scorer_out),
        "intervals": {
            "method": "95 % percentile bootstrap over patients, 1000 resamples",
            **bootstrap_intervals(
                y_eval,
                p_eval,
                threshold=threshold,
                groups=[r.patient for r in eval_records],
                grade_rule=rule_of_grades,
            ),
        },
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
        grade_rule=rule_of_grades,
    )
    if (run_dir / HISTORY_FILE).is_file():
        plot_curves(run_dir / HISTORY_FILE, run_dir / CURVES_FILE)
    description, synthetic = describe_training_data(config, len(splits["train"]))
    card = ModelCard(
        name=run_dir.name,
        version="1",
        backbone=config.backbone,
        head=config.head,
        input_size=config.size,
        preprocessing=datasets.preprocessing.to_dict(),
        objective=config.objective,
        thresholds=thresholds,
        training_data=description,
        metrics={
            k: metrics[k]
            for k in (
                "qwk",
                "accuracy",
                "macro_f1",
                "referable",
                "n",
                "split",
                "intervals",
                "calibration",
                "val",
            )
        },
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
    (run_dir / MODEL_CARD_FILE).write_text(card.to_json() + "\n", encoding="utf-8")
    log(f"{split_name} split: " + summary(metrics))
    log(f"run directory: {run_dir}")
    return metrics


__all__ = [
    "Phase",
    "TrainConfig",
    "deployable",
    "plan_phases",
    "resolve",
    "train",
]
