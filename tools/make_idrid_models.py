"""Train the optic-disc and lesion segmenters on IDRiD's real masks.

    nice -n 15 python tools/make_idrid_models.py disc    --threads 1   # ~15 min on 1 core
    nice -n 15 python tools/make_idrid_models.py lesions --threads 1   # ~40 min on 1 core
    nice -n 15 python tools/make_idrid_models.py lesions --encoder efficientnet_lite0 \
        --freeze 2 --patch 256 --steps 60 --epochs 24 --budget 2700 --lr 1e-3 --rim 0.3 \
        --ignore-rim 0.03 --threads 2 --out runs/lesions-0/lesions.keras  # 48 min: round 0
    # then twice (round r = 1, 2; ~20 min each): continue on the previous round's false alarms
    nice -n 15 python tools/make_idrid_models.py lesions --encoder efficientnet_lite0 \
        --freeze 2 --patch 256 --steps 60 --epochs 30 --patience 8 --budget 2700 --lr 3e-4 \
        --rim 0.3 --mine 0.5 --ignore-rim 0.03 --threads 2 \
        --init runs/lesions-$((r-1))/lesions.keras --out runs/lesions-$r/lesions.keras

- ``disc``: a small U-Net (width 8) on the whole 256 px fundus crop, target = IDRiD's
  optic-disc masks;
- ``lesions``: a U-Net on the 1024 px fundus crop with CLAHE (a microaneurysm is ~4-8 px
  there), random 128 px patches, half of them centred on a lesion of a class drawn
  uniformly (so microaneurysms are seen as often as exudates), classes microaneurysm,
  haemorrhage, hard_exudate, cotton_wool (IDRiD MA, HE, EX, SE). ``--encoder
  efficientnet_lite0`` swaps the from-scratch U-Net for one whose encoder starts from ImageNet
  (:mod:`retinascreen.models.lite_unet`; ``--freeze N`` keeps the stem and the first N stages
  as they are, ~1.5x faster steps for N=2); ``--rim`` centres that share of the non-lesion
  patches on the field's outer rim (hard negatives); ``--ignore-rim`` writes the outer share
  of the field's radius that the served maps leave out into the card (and scores so).
  ``--mine S`` (with ``--init``) centres a share S of the non-lesion patches on the pixels
  where the model being continued marks a lesion that the specialists did not (at least 12 px
  from any marked lesion): hard-negative mining against false alarms such as vessel sheen,
  the disc's rim and drusen-like spots. A continuation replaces its start only if it beats
  the start's validation Dice. ``--negatives N`` adds N lesion-free EyePACS photos (grade 0,
  EyeQ "Good", from the grading model's training split; a quarter as many from its validation
  split to validation), so false alarms on healthy eyes cost validation Dice too.

Both learn from IDRiD's 54 training photos (6 held out for early stopping and the
thresholds: ``VAL_PHOTOS``), BCE + soft Dice, and are measured on the 27 test photos
(``bench/idrid_segmentation.py``). Each model is written with its card and ONNX twin to
``src/retinascreen/segmentation_models/{disc,lesions}.keras`` (or ``--out``). Photos are
only read from ``../shared/data/idrid-segmentation``; none is copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))
IDRID = ROOT.parent / "shared" / "data" / "idrid-segmentation"
OUT_DIR = ROOT / "src" / "retinascreen" / "segmentation_models"
CACHE = ROOT / "runs" / "idrid-cache"
EYEPACS = ROOT.parent / "shared" / "data" / "eyepacs-256"
VAL_PHOTOS = ("IDRiD_05", "IDRiD_14", "IDRiD_23", "IDRiD_32", "IDRiD_41", "IDRiD_50")
LESIONS = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool")
LICENCE = "IDRiD (Porwal et al., Data 3(3):25, 2018): CC BY 4.0"
DISC_USE = (
    "Research and education: optic-disc outline, centre and diameter on colour fundus "
    "photographs (for the fovea, laterality and the macular zone). Not for clinical use: not a "
    "medical device; trained on 48 photos of one camera (Kowa VX-10, 50 degrees)."
)
LESIONS_USE = (
    "Research and education: maps of microaneurysms, haemorrhages, hard exudates and cotton-"
    "wool spots on colour fundus photographs, to show a grader where to look and to flag "
    "exudates near the fovea. Not for clinical use: not a medical device; trained on 48 photos "
    "of one camera (Kowa VX-10, 50 degrees) from one Indian clinic."
)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cached(key: Path, build: Callable[[], Any]) -> Any:
    """The SegData saved at ``key`` (under runs/idrid-cache), or ``build()``'s, saved there."""
    from retinascreen.training.segmentation import SegData

    if key.is_file():
        z = np.load(key)
        return SegData(z["views"], z["targets"], z["fields"], list(z["names"]))
    data = build()
    key.parent.mkdir(parents=True, exist_ok=True)
    np.savez(key, views=data.views, targets=data.targets, fields=data.fields,
             names=np.array(data.names))  # fmt: skip
    return data


def idrid_data(split: str, size: int, classes: tuple[str, ...], clahe: bool) -> Any:
    """SegData of an IDRiD split at ``size`` (cached)."""
    from retinascreen.data.idrid_masks import crop_photo, read_idrid_masks
    from retinascreen.training.segmentation import SegData

    def build() -> Any:
        views, targets, fields, names = [], [], [], []
        for photo in read_idrid_masks(IDRID, split):
            view, target, field = crop_photo(photo, size, classes, clahe=clahe)
            views.append(view)
            targets.append(target)
            fields.append(field)
            names.append(photo.name)
        return SegData(np.stack(views), np.stack(targets), np.stack(fields), names)

    return cached(
        CACHE / f"{split}-{size}-{'clahe' if clahe else 'plain'}-{'-'.join(classes)}.npz", build
    )


def val_negatives(n: int) -> int:
    """How many lesion-free validation photos go with ``n`` training ones."""
    return max(2, n // 4)


def eyepacs_negatives(n: int, size: int, classes: tuple[str, ...], clahe: bool) -> tuple[Any, Any]:
    """``n`` training and :func:`val_negatives` validation lesion-free photos: EyePACS grade 0
    that EyeQ's graders marked Good, made raw-looking (``synthetic.camera``), from the grading
    model's own train and validation splits (those of ``configs/eyepacs-lite.toml``), so no
    grading test photo is used (cached)."""
    import random

    from tests.helpers import photo_sets as sets

    from retinascreen.data.datasets import load_dataset, split_dataset
    from retinascreen.data.images import load_image
    from retinascreen.synthetic.camera import raw_looking
    from retinascreen.training.config import load_config
    from retinascreen.training.segmentation import lesion_free_data

    def build() -> Any:
        good = {name for name, label in sets.eyeq_quality().items() if label == "Good"}
        grading = load_config(ROOT / "configs" / "eyepacs-lite.toml")
        records = load_dataset(EYEPACS, "eyepacs")
        splits = split_dataset(records, val=grading.val, test=grading.test, seed=grading.split_seed)
        paths = []
        for split, count in (("train", n), ("val", val_negatives(n))):
            pool = sorted(
                r.path for r in splits[split] if r.grade == 0 and Path(r.path).stem in good
            )
            paths += random.Random(0).sample(pool, count)
        # shown as raw camera frames, as a clinic's photos come
        photos = [(Path(p).stem, raw_looking(load_image(p), i)) for i, p in enumerate(paths)]
        return lesion_free_data(photos, size, len(classes), clahe=clahe)

    key = CACHE / f"eyepacs-negatives-raw-{n}-{size}-{'clahe' if clahe else 'plain'}.npz"
    data = cached(key, build)
    return data.subset(range(n)), data.subset(range(n, len(data.names)))


def split_val(data: Any) -> tuple[Any, Any]:
    val = [i for i, n in enumerate(data.names) if n in VAL_PHOTOS]
    return data.subset([i for i in range(len(data.names)) if i not in val]), data.subset(val)


def balanced_sampler(
    data: Any, *, rim: float = 0.0, hard: list[Any] | None = None, mine: float = 0.0, **kwargs: Any
) -> Any:
    """A PatchSampler whose lesion-centred patches pick the class first (uniformly among the
    classes the photo has), then a pixel of it: rare, tiny microaneurysms get their share.
    Of the other patches, a share ``mine`` is centred on the photo's ``hard`` pixels (mined
    false alarms: ``training.segmentation.false_alarms``) and a share ``rim`` of the rest on
    the outer 8 % of the field's radius (hard negatives: the field's edge, mostly lesion-free)."""
    from retinascreen.data.rim import field_rim
    from retinascreen.training.segmentation import PatchSampler, augment

    class Balanced(PatchSampler):
        def __init__(self) -> None:
            super().__init__(data, **kwargs)
            side, half = data.views.shape[1], self.patch // 2
            inner = (slice(half, side - half + 1), slice(half, side - half + 1))
            self.pools = [
                [np.argwhere(t[..., c][inner]) for c in range(t.shape[-1])] for t in data.targets
            ]
            self.rims = [np.argwhere(field_rim(f, 0.08)[inner]) for f in data.fields]
            self.hard = [np.argwhere(h[inner]) for h in hard] if hard else []

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            xs, ys = [], []
            for _ in range(self.batch):
                i = int(self.rng.integers(len(self.data.views)))
                pool = self.inner[i]
                present = [p for p in self.pools[i] if len(p)]
                if present and self.rng.random() < self.lesion_bias:
                    pool = present[int(self.rng.integers(len(present)))]
                elif self.hard and len(self.hard[i]) and self.rng.random() < mine:
                    pool = self.hard[i]
                elif len(self.rims[i]) and self.rng.random() < rim:
                    pool = self.rims[i]
                top, left = pool[self.rng.integers(len(pool))] if len(pool) else (0, 0)
                cut = (slice(top, top + self.patch), slice(left, left + self.patch))
                x, y = augment(self.rng, self.data.views[i][cut], self.data.targets[i][cut])
                xs.append(x)
                ys.append(y)
            return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)

    return Balanced()


def train(model: Any, train_data: Any, val: Any, args: argparse.Namespace) -> Any:
    """Fit on patches; keep the best validation weights; thresholds on validation."""
    import keras

    from retinascreen.training.segmentation import (
        TrainResult,
        _Validate,
        bce_dice_loss,
        choose_thresholds,
        mean_dice,
        predict_maps,
        validation_dice,
    )

    start = time.monotonic()
    schedule = keras.optimizers.schedules.CosineDecay(
        args.lr, decay_steps=max(1, args.steps * args.epochs), alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice_loss)
    hard = None
    if args.mine:
        from retinascreen.training.segmentation import false_alarms

        hard = false_alarms(model, train_data)
        _log(f"mined {sum(int(h.sum()) for h in hard)} false-alarm pixels on "
             f"{sum(bool(h.any()) for h in hard)} of {len(hard)} training photos")  # fmt: skip
    sampler = balanced_sampler(
        train_data,
        patch=args.patch,
        batch=args.batch,
        steps=args.steps,
        lesion_bias=args.bias,
        rim=args.rim,
        hard=hard,
        mine=args.mine,
    )
    check = _Validate(val, args.budget, args.patience, _log)
    if args.init:  # a continuation must beat its start on validation to replace it
        check.best = validation_dice(model, val, batch=1)
        check.best_weights = model.get_weights()
        _log(f"start: val dice {check.best:.4f}")
    model.fit(sampler, epochs=args.epochs, callbacks=[check], verbose=0)
    if check.best_weights is not None:
        model.set_weights(check.best_weights)
    maps = predict_maps(model, val.views, batch=1, flip_average=args.flip_average)
    thresholds = choose_thresholds(maps, val)
    return TrainResult(
        thresholds, mean_dice(maps, val, thresholds), check.history, time.monotonic() - start
    )


def make(args: argparse.Namespace) -> Path:
    import keras

    from retinascreen.data.fundus import Preprocessing
    from retinascreen.models.modelcard import ModelCard
    from retinascreen.models.segmentation import build_segmenter

    classes = ("optic_disc",) if args.what == "disc" else LESIONS
    data = idrid_data("train", args.size, classes, args.clahe)
    train_data, val = split_val(data)
    if args.negatives:
        neg_train, neg_val = eyepacs_negatives(args.negatives, args.size, classes, args.clahe)
        train_data, val = train_data + neg_train, val + neg_val
    if args.encoder:
        from retinascreen.models.lite_unet import build_lite_unet, freeze_encoder

        model = build_lite_unet(classes, args.encoder, weights="none" if args.init else "imagenet")
        frozen = freeze_encoder(model, args.freeze)
        arch = f"{args.encoder} U-Net (ImageNet encoder, {frozen} layers frozen)"
    else:
        model = build_segmenter("unet", classes, width=args.width, depth=args.depth)
        arch = f"unet w{args.width} d{args.depth}"
    if args.init:
        model.set_weights(keras.models.load_model(args.init, compile=False).get_weights())
    _log(f"{args.what}: {arch}, {model.count_params()} params, "
         f"{len(train_data.names)} train / {len(val.names)} val photos at {args.size} px")  # fmt: skip
    result = train(model, train_data, val, args)
    earlier, epochs = 0.0, len(result.history)  # a continuation adds its start's training time
    if args.init:
        from retinascreen.models.modelcard import read_card

        start = read_card(args.init).metrics
        earlier = float(start.get("training_seconds", 0))
        epochs = epochs or int(start.get("epochs", 0))  # --epochs 0: only re-finished
    metrics: dict[str, Any] = {
        "validation_dice": dict(zip(classes, [round(d, 4) for d in result.val_dice], strict=True)),
        "validation_photos": list(VAL_PHOTOS),
        "training_seconds": round(result.seconds + earlier),
        "epochs": epochs,
    }
    from idrid_eval import test_metrics  # the same figures as bench/idrid_segmentation.py

    metrics |= test_metrics(
        model,
        args.size,
        classes,
        args.clahe,
        result.thresholds,
        ignore_rim=args.ignore_rim,
        flip_average=args.flip_average,
    )
    _log(f"{args.what}: {json.dumps(metrics)}")
    extra: dict[str, Any] = {"width": args.width, "depth": args.depth, "patch": args.patch}
    if args.encoder:
        extra = {
            "encoder": args.encoder,
            "encoder_weights": "ImageNet (Google's EfficientNet-Lite checkpoint)",
            "frozen_stages": args.freeze,
            "patch": args.patch,
            "rim_patches": args.rim,
            "mined_patches": args.mine,
            "lesion_patches": args.bias,
        }
    if args.ignore_rim:
        extra["ignore_rim"] = args.ignore_rim
    if args.negatives:
        extra["negative_photos"] = args.negatives
    if args.flip_average:
        extra["flip_average"] = True
    card = ModelCard(
        name=f"retinascreen-{args.what}-idrid-"
        + (f"{args.encoder}-unet" if args.encoder else "unet"),
        task="segmentation",
        backbone=args.encoder or "unet",
        head="segmentation",
        input_size=args.size,
        classes=list(classes),
        preprocessing=Preprocessing(size=args.size, clahe=args.clahe),
        thresholds=result.thresholds,
        training_data=f"IDRiD segmentation training set, 54 photos (48 for training, 6 for "
        f"validation), specialists' pixel masks; {LICENCE}"
        + (
            f"; plus {args.negatives} + {val_negatives(args.negatives)} lesion-free EyePACS "
            "photos (grade 0, EyeQ 'Good', 256 px, made raw-looking) as negatives for training "
            "+ validation"
            if args.negatives
            else ""
        )
        + (f"; encoder initialised from ImageNet ({args.encoder})" if args.encoder else ""),
        metrics=metrics,
        synthetic=False,
        intended_use=DISC_USE if args.what == "disc" else LESIONS_USE,
        extra=extra,
    )
    from make_segmentation_models import _save

    return _save(model, card, args.out or OUT_DIR / f"{args.what}.keras")


DEFAULTS = {
    "disc": {"size": 256, "width": 8, "depth": 4, "patch": 256, "batch": 6, "steps": 30,
             "epochs": 60, "budget": 1300.0, "patience": 15, "bias": 0.6, "clahe": False},
    "lesions": {"size": 1024, "width": 8, "depth": 4, "patch": 128, "batch": 8, "steps": 100,
                "epochs": 40, "budget": 2400.0, "patience": 10, "bias": 0.6, "clahe": True},
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("disc", "lesions"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", type=Path, default=None, help="start from this model's weights")
    parser.add_argument("--lr", type=float, default=2e-3)
    for key in ("size", "width", "depth", "patch", "batch", "steps", "epochs", "patience"):
        parser.add_argument(f"--{key}", type=int, default=None)
    parser.add_argument("--budget", type=float, default=None, help="training seconds")
    parser.add_argument("--bias", type=float, default=None, help="share of lesion-centred patches")
    parser.add_argument("--clahe", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument(
        "--encoder",
        default=None,
        help="ImageNet-pretrained encoder (efficientnet_lite0..2) "
        "instead of the from-scratch U-Net",
    )
    parser.add_argument(
        "--ignore-rim",
        type=float,
        default=0.0,
        help="outer share of the field's radius the served maps leave out (card: ignore_rim)",
    )
    parser.add_argument("--freeze", type=int, default=0, help="encoder stages to freeze")
    parser.add_argument(
        "--mine",
        type=float,
        default=0.0,
        help="share of the non-lesion patches on the --init model's false alarms",
    )
    parser.add_argument(
        "--negatives",
        type=int,
        default=0,
        help="lesion-free EyePACS photos (grade 0, EyeQ Good) added as negatives to training "
        "(and a quarter as many to validation)",
    )
    parser.add_argument(
        "--rim", type=float, default=0.0, help="share of the non-lesion patches on the field's rim"
    )
    parser.add_argument(
        "--flip-average",
        action="store_true",
        help="serve (card: flip_average) and score the maps averaged with the mirrored photo's; "
        "the thresholds are chosen on such maps (with --init and --epochs 0: re-finish a model)",
    )
    args = parser.parse_args(argv)
    if args.mine and not args.init:
        parser.error("--mine needs --init: false alarms are mined with the model continued")
    for key, value in DEFAULTS[args.what].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(0)
    make(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
