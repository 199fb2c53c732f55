"""Fine-tuned EfficientNet-Lite0 vs Lite2: the upper stages trained, several seeds, on 2 cores.

Fine-tuning a whole backbone once per seed and backbone is out of a 2-core budget (Lite2 at
256 px: 2.6 photos/s, about 18 min per epoch). This bench fine-tunes what the bundled model
fine-tunes most, the *upper* stages, and nothing below them changes, so their input is
computed once: the frozen ImageNet backbone's activations at ``--cut`` (the input of stage 6,
``block6a_expand_conv``: 16 x 16 maps at 256 px) are cached per photo
(``bench/transfer.py``'s cache), then per seed a fresh ImageNet copy of stages 6-7 and the
1280-filter head conv gets the product's head and regression objective in the seeds' two
phases: the head alone on the frozen stages (``--head-epochs``), then the stages unfrozen with
BatchNormalization frozen at a small learning rate, early stopping on validation loss.

Same split, inputs and figures as ``bench/transfer.py`` (test QWK and referable AUC on the
patient-grouped EyePACS-256 test split; srahim-dr, raw photos of another clinic never trained
on: QWK, AUC, sensitivity and specificity at the threshold chosen on validation for 90 %
sensitivity); mean ± standard deviation over seeds, written to
``bench/results/finetune-upper.md``. No augmentation (the activations are cached), so this
ranks backbones; it does not reproduce the bundled model's figures.

    python bench/finetune_upper.py --backbones efficientnet_lite0 efficientnet_lite2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from transfer import (  # noqa: E402
    CACHE,
    EVALUATION,
    TABLE_HEADER,
    features,
    graded_records,
    merged_rows,
    score_row,
    table_row,
)

RESULTS = Path(__file__).resolve().parent / "results" / "finetune-upper.md"
CUT = "block6a_expand_conv"


def _upper_model(backbone: str, size: int, cut: str, head: str, mean_grade: float):  # noqa: ANN202
    """ImageNet stages above ``cut`` + ``head`` + a regression unit; returns (model, upper)."""
    import keras

    from retinascreen.models.backbones import create_backbone
    from retinascreen.models.heads import get_head

    full = create_backbone(backbone, keras.Input((size, size, 3)), weights="imagenet")
    boundary = full.get_layer(cut).input
    upper = keras.Model(boundary, full.output)
    inputs = keras.Input(boundary.shape[1:])
    probabilities = get_head(head)(upper(inputs), 5)
    pooled = probabilities._keras_history.operation.input  # the features before the softmax
    score = keras.layers.Dense(1, bias_initializer=keras.initializers.Constant(mean_grade))(pooled)
    return keras.Model(inputs, score), upper


def _fit(model, feats: dict, grades: dict, epochs: int, lr: float, patience: int) -> int:  # noqa: ANN001
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    stop = keras.callbacks.EarlyStopping(patience=patience, restore_best_weights=True)
    history = model.fit(
        feats["train"],
        grades["train"].astype(np.float32),
        validation_data=(feats["val"], grades["val"].astype(np.float32)),
        epochs=epochs,
        batch_size=32,
        callbacks=[stop],
        verbose=0,
    )
    return len(history.history["loss"])


def fine_tune(
    backbone: str, feats: dict, grades: dict, seed: int, args: argparse.Namespace
) -> dict[str, float]:
    """One seed: head on the frozen upper stages, then the stages unfrozen (BN frozen)."""
    import keras

    keras.utils.set_random_seed(seed)
    model, upper = _upper_model(
        backbone, args.size, args.cut, args.head, float(np.mean(grades["train"]))
    )
    started = time.perf_counter()
    upper.trainable = False
    head_epochs = _fit(model, feats, grades, args.head_epochs, 1e-3, patience=3)
    upper.trainable = True
    for layer in upper.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    tune_epochs = _fit(model, feats, grades, args.epochs, args.lr, patience=2)
    scores = {k: model.predict(v, verbose=0).reshape(-1) for k, v in feats.items()}
    row = score_row(scores, grades)
    row["minutes"] = (time.perf_counter() - started) / 60
    print(
        f"  {backbone} seed {seed}: {head_epochs} head + {tune_epochs} fine-tuning epochs in "
        f"{row['minutes']:.1f} min; " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()),
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backbones", nargs="*", default=["efficientnet_lite0", "efficientnet_lite2"]
    )
    parser.add_argument("--input", default="equalize", help="pre-processing (bench/transfer.py)")
    parser.add_argument("--head", default="wise-srnet")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--cut", default=CUT, help="the first backbone layer that is fine-tuned")
    parser.add_argument("--head-epochs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8, help="fine-tuning epochs at most")
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)
    loaded = graded_records()
    if loaded is None:
        return 2
    records, grades = loaded
    lines = [f"{TABLE_HEADER} minutes per seed |", "|---" * 11 + "|"]
    raw: dict[str, list[dict[str, float]]] = {}
    for backbone in args.backbones:
        started = time.perf_counter()
        feats = features(backbone, args.input, args.size, records, cut=args.cut)
        feats = {k: v.astype(np.float32) for k, v in feats.items()}
        print(f"{backbone}: activations in {time.perf_counter() - started:.0f} s", flush=True)
        rows = [fine_tune(backbone, feats, grades, seed, args) for seed in args.seeds]
        raw[backbone] = rows
        minutes = np.mean([r["minutes"] for r in rows])
        line = table_row((backbone, args.input, args.head), rows)
        lines.append(f"{line} {minutes:.0f} |")
        print(lines[-1], flush=True)
    lines[2:] = merged_rows(lines[2:], RESULTS)
    table = "\n".join(lines)
    print(table)
    (CACHE / f"finetune-upper-{'-'.join(args.backbones)}.json").write_text(
        json.dumps(raw, indent=1)
    )
    command = "python bench/finetune_upper.py " + " ".join(argv or sys.argv[1:])
    header = (
        "# Fine-tuned upper stages: EfficientNet-Lite0 vs Lite2\n\n"
        f"`{command.strip()}` ({time.strftime('%Y-%m-%d')}, 2 CPU cores shared with other "
        "jobs; rows of backbones not given are kept from the previous table). Frozen ImageNet "
        f"backbone up to `{args.cut}` (activations cached), stages above "
        f"it + `{args.head}` head + regression unit: head alone for up to {args.head_epochs} "
        f"epochs (Adam 1e-3), then the stages unfrozen with BatchNormalization frozen for up to "
        f"{args.epochs} epochs (Adam {args.lr:g}), early stopping on validation loss; no "
        f"augmentation. Input: `{args.input}`, {args.size} px. {EVALUATION}\n\n"
    )
    RESULTS.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
