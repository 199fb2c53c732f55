"""Train and bundle the segmentation models: ``python tools/make_segmentation_models.py``.

- ``vessels``: a U-Net trained on DRIVE's 20 training photos (3 held out for early stopping
  and the threshold), random 96 px patches of the 576 px fundus crop (DRIVE's ~540 px field
  at its native scale), BCE + Dice; measured on DRIVE's 20 test photos inside the field of
  view against the 1st observer (the bundled one: ``vessels --clahe``, CLAHE after the crop);
- ``lesions``: a U-Net trained on synthetic photos (256 px) with their per-lesion masks,
  measured by per-lesion Dice on unseen synthetic photos (the bundled one: ``lesions
  --n-synthetic 300 --threads 1``, then ``--init`` it ``--lr 1e-3 --budget 480 --epochs 10``).

Each model is written with its card to ``src/retinascreen/segmentation_models/<what>.keras``
(or ``--out``), with its ONNX twin ``<what>.onnx`` beside it (what ``Segmenter`` runs). The photographs are only read from ``../shared/data/drive``; none is copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT.parent / "shared" / "data" / "drive"
OUT_DIR = ROOT / "src" / "retinascreen" / "segmentation_models"
VAL_PHOTOS = ("21_training", "29_training", "37_training")
VESSELS_DATA = "DRIVE training set, 20 photos, manual annotations"
VESSELS_LICENCE = "DRIVE (Staal et al. 2004): research use (DRIVE terms)"
LESIONS_DATA = "synthetic photos only - no real lesion masks"
VESSELS_USE = (
    "Research and education: retinal vessel maps for display and vessel density on colour "
    "fundus photographs. Not for clinical use: not a medical device; trained on 17 photos of "
    "one camera (Canon CR5, 45 degrees)."
)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _threads(n: int) -> None:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def drive_test_metrics(model, size: int, threshold: float, clahe: bool = False) -> dict:  # noqa: ANN001
    """Pooled and per-photo-mean figures on DRIVE's test set (inside the field, 1st observer)."""
    import numpy as np

    from retinascreen.data.drive import read_drive
    from retinascreen.training.segmentation import drive_data, pixel_metrics, predict_maps

    test = drive_data(read_drive(DRIVE, "test"), size, clahe=clahe)
    maps = predict_maps(model, test.views)[..., 0]
    pooled = pixel_metrics(maps, test.targets[..., 0], test.fields, threshold)
    per = [
        pixel_metrics(maps[i], test.targets[i, ..., 0], test.fields[i], threshold)
        for i in range(len(maps))
    ]
    mean = {k: float(np.mean([p[k] for p in per])) for k in ("auc", "f1")}
    return {
        "drive_test_pooled": {k: round(float(v), 4) for k, v in pooled.items() if v is not None},
        "drive_test_mean_per_photo": {k: round(v, 4) for k, v in mean.items()},
    }


def make_vessels(args: argparse.Namespace) -> Path:
    import keras

    from retinascreen.data.drive import read_drive
    from retinascreen.data.fundus import Preprocessing
    from retinascreen.models.modelcard import ModelCard, read_card
    from retinascreen.models.segmentation import build_segmenter
    from retinascreen.training.segmentation import drive_data, train_segmenter

    photos = read_drive(DRIVE, "training")
    data = drive_data(photos, args.size, clahe=args.clahe)
    val_idx = [i for i, n in enumerate(data.names) if n in VAL_PHOTOS]
    train_idx = [i for i in range(len(data.names)) if i not in val_idx]
    model = build_segmenter(args.arch, ("vessels",), width=args.width, depth=args.depth)
    if args.init:  # continue from an earlier run's weights (its training time is added)
        model.set_weights(keras.models.load_model(args.init, compile=False).get_weights())
    _log(f"vessels: {args.arch} w{args.width} d{args.depth}, {model.count_params()} params")
    result = train_segmenter(
        model,
        data.subset(train_idx),
        data.subset(val_idx),
        patch=args.patch,
        batch=args.batch,
        steps=args.steps,
        max_epochs=args.epochs,
        budget_s=args.budget,
        patience=args.patience,
        learning_rate=args.lr,
        log=_log,
    )
    earlier = read_card(args.init).metrics.get("training_seconds", 0) if args.init else 0
    metrics = drive_test_metrics(model, args.size, result.thresholds[0], args.clahe)
    metrics |= {
        "validation_dice": round(result.val_dice[0], 4),
        "validation_photos": list(VAL_PHOTOS),
        "training_seconds": round(result.seconds + earlier),
        "epochs": len(result.history),
        "evaluation": "DRIVE test, 20 photos, inside the FOV mask, vs 1st observer, "
        f"in the {args.size} px fundus crop",
    }
    _log(f"vessels: {json.dumps(metrics)}")
    card = ModelCard(
        name=f"retinascreen-vessels-{args.arch}",
        task="segmentation",
        backbone=args.arch,
        head="segmentation",
        input_size=args.size,
        classes=["vessels"],
        preprocessing=Preprocessing(size=args.size, clahe=args.clahe),
        thresholds=result.thresholds,
        training_data=f"{VESSELS_DATA} (17 for training, 3 for validation); {VESSELS_LICENCE}",
        metrics=metrics,
        synthetic=False,
        intended_use=VESSELS_USE,
        extra={"width": args.width, "depth": args.depth, "patch": args.patch},
    )
    return _save(model, card, args.out or OUT_DIR / "vessels.keras")


def make_lesions(args: argparse.Namespace) -> Path:
    import keras
    import numpy as np

    from retinascreen.data.fundus import Preprocessing
    from retinascreen.models.modelcard import ModelCard, read_card
    from retinascreen.models.segmentation import build_segmenter
    from retinascreen.synthetic import LESIONS
    from retinascreen.training.segmentation import (
        mean_dice,
        predict_maps,
        synthetic_data,
        train_segmenter,
    )

    classes = list(LESIONS)
    _log(f"lesions: generating {args.n_synthetic} + {args.n_val} + {args.n_test} photos")
    train = synthetic_data(range(args.n_synthetic), args.size, classes)
    val = synthetic_data(range(100_000, 100_000 + args.n_val), args.size, classes)
    test = synthetic_data(range(200_000, 200_000 + args.n_test), args.size, classes)
    model = build_segmenter(args.arch, classes, width=args.width, depth=args.depth)
    if args.init:  # continue from an earlier run's weights (its training time is added)
        model.set_weights(keras.models.load_model(args.init, compile=False).get_weights())
    _log(f"lesions: {args.arch} w{args.width} d{args.depth}, {model.count_params()} params")
    result = train_segmenter(
        model,
        train,
        val,
        patch=args.patch,
        batch=args.batch,
        steps=args.steps,
        max_epochs=args.epochs,
        budget_s=args.budget,
        patience=args.patience,
        learning_rate=args.lr,
        lesion_bias=0.5,
        log=_log,
    )
    earlier = read_card(args.init).metrics.get("training_seconds", 0) if args.init else 0
    maps = predict_maps(model, test.views)
    dice = mean_dice(maps, test, result.thresholds)
    present = test.targets.reshape(-1, len(classes)).any(0)
    metrics = {
        "synthetic_test_dice": {
            c: round(d, 4) if p else None for c, d, p in zip(classes, dice, present, strict=True)
        },
        "synthetic_test_photos": args.n_test,
        "training_photos": args.n_synthetic,
        "training_seconds": round(result.seconds + earlier),
        "epochs": len(result.history),
        "mean_dice": round(float(np.mean([d for d, p in zip(dice, present, strict=True) if p])), 4),
    }
    _log(f"lesions: {json.dumps(metrics)}")
    card = ModelCard(
        name=f"retinascreen-lesions-{args.arch}",
        task="segmentation",
        backbone=args.arch,
        head="segmentation",
        input_size=args.size,
        classes=classes,
        preprocessing=Preprocessing(size=args.size),
        thresholds=result.thresholds,
        training_data=f"{LESIONS_DATA}: {args.n_synthetic} synthetic photos "
        f"(retinascreen.synthetic, {args.size} px) with per-lesion masks",
        metrics=metrics,
        synthetic=True,
        extra={"width": args.width, "depth": args.depth, "patch": args.patch},
    )
    return _save(model, card, args.out or OUT_DIR / "lesions.keras")


def _save(model, card, path: Path) -> Path:  # noqa: ANN001
    import keras

    from retinascreen.models.modelcard import write_card

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = keras.Model.from_config(model.get_config())  # uncompiled: no optimizer state
    clean.set_weights(model.get_weights())
    clean.save(path)
    write_card(path, card)
    _log(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    # The ONNX twin is what Segmenter runs (3-5x faster); never leave a stale one beside it.
    from retinascreen.serving.export import export_model

    _log(export_model(path, path.with_suffix(".onnx")).summary())
    return path


DEFAULTS = {
    "vessels": {"size": 576, "width": 16, "depth": 4, "patch": 96, "batch": 16, "steps": 100,
                "epochs": 30, "budget": 1200.0, "patience": 8},
    "lesions": {"size": 256, "width": 16, "depth": 4, "patch": 128, "batch": 8, "steps": 60,
                "epochs": 30, "budget": 600.0, "patience": 6},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("vessels", "lesions", "both"), nargs="?", default="both")
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clahe", action="store_true", help="CLAHE after the crop (vessels)")
    for key in ("size", "width", "depth", "patch", "batch", "steps", "epochs", "patience"):
        parser.add_argument(f"--{key}", type=int, default=None)
    parser.add_argument("--init", type=Path, default=None, help="start from this model's weights")
    parser.add_argument(
        "--lr", type=float, default=2e-3, help="initial learning rate (cosine decay)"
    )
    parser.add_argument("--budget", type=float, default=None, help="training seconds")
    parser.add_argument("--n-synthetic", type=int, default=400)
    parser.add_argument("--n-val", type=int, default=24)
    parser.add_argument("--n-test", type=int, default=60)
    args = parser.parse_args(argv)
    _threads(args.threads)
    import keras

    keras.utils.set_random_seed(0)
    for what in ("vessels", "lesions") if args.what == "both" else (args.what,):
        run = argparse.Namespace(**vars(args))
        for key, value in DEFAULTS[what].items():
            if getattr(run, key) is None:
                setattr(run, key, value)
        (make_vessels if what == "vessels" else make_lesions)(run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
