"""``retinascreen train``: train a grading model into a run directory (resumable)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from retinascreen.training.config import TrainConfig

EPILOG = """examples:
  retinascreen synth data/synth --n 300 --size 256
  retinascreen train --data data/synth --format aptos --backbone mini_xception --head wise-srnet \\
      --size 128 --epochs 5 --out runs/mini
  retinascreen train --config train.toml --epochs 20 --out runs/xception   # flags override the file

Running the same command again on an interrupted run continues from its last epoch; raise
--epochs to train an existing run further; --overwrite starts the run again."""

# CLI flag -> TrainConfig field (flags given on the command line override --config)
_FLAGS = (
    "data",
    "format",
    "backbone",
    "head",
    "size",
    "weights",
    "epochs",
    "batch_size",
    "out",
    "objective",
    "regression_loss",
    "lr",
    "fine_tune_epochs",
    "fine_tune_lr",
    "unfreeze_top",
    "head_on_features",
    "class_weights",
    "patience",
    "seed",
    "split_seed",
    "ben_graham",
    "clahe",
    "equalize",
    "camera_variants",
    "keep",
    "val",
    "test",
    "train_limit",
    "target_sensitivity",
    "mixed_precision",
    "distribute",
    "cache_dir",
    "widths",
    "stem_stride",
    "dropout",
)


# The registry's names (models.backbones.BACKBONES), written out so that `--help` needs no Keras
# import; tests/commands/test_train.py checks that the two agree.
BACKBONE_NAMES = (
    "xception",
    "vgg16",
    "vgg19",
    "resnet50",
    "inception_v3",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "mini_xception",
)


def register(subparsers: Any) -> None:
    from retinascreen.data.formats import FORMAT_HELP, FORMATS
    from retinascreen.training.config import OBJECTIVES, REGRESSION_LOSSES, STRATEGIES

    p = subparsers.add_parser(
        "train",
        help="train a DR grading model (transfer learning, Wise-SrNet head by default)",
        description="Train backbone + head on a graded fundus data set. With pretrained weights "
        "the head is trained first on a frozen backbone, then the top of the backbone is "
        "fine-tuned at a lower learning rate with BatchNormalization frozen. The best epoch by "
        "validation QWK is kept as RUN_DIR/best.keras and evaluated on the test split.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--config", metavar="FILE.toml", help="read settings from a TOML file (flags override it)")
    add("--data", metavar="PATH", help="data set folder (or CSV for idrid)")
    add(
        "--format",
        choices=FORMATS,
        help=f"{FORMAT_HELP} (default aptos)",
    )
    add("--out", metavar="RUN_DIR", help="run directory to write (required)")
    add("--backbone", help=f"one of: {', '.join(BACKBONE_NAMES)} (default xception)")
    add(
        "--head",
        help="wise-srnet (default), wise-srnet-dropout, gap, gap-dropout, flatten-fc, "
        "depthwise, depthwise-nonneg",
    )
    add("--size", type=int, help="input size in pixels (default 299)")
    add("--weights", help="imagenet (default), none, or a weights / .keras file")
    add("--widths", help="mini_xception block widths, e.g. 32,64,128")
    add(
        "--stem-stride",
        type=int,
        choices=(1, 2),
        help="mini_xception stem stride (default 1 as in the seeds; 2 as in Xception, ~3x faster)",
    )
    add("--dropout", type=float, help="dropout of the -dropout heads (default 0.5)")
    add("--epochs", type=int, help="epochs of the first phase (default 10)")
    add("--batch-size", type=int, help="batch size (default 16)")
    add("--lr", type=float, help="learning rate of the first phase (default 1e-3)")
    add("--fine-tune-epochs", type=int, help="epochs of backbone fine-tuning (default 5; 0 = off)")
    add("--fine-tune-lr", type=float, help="fine-tuning learning rate (default 1e-5)")
    add(
        "--unfreeze-top",
        type=int,
        help="backbone layers unfrozen for fine-tuning (default 40; 0 = all)",
    )
    add(
        "--head-on-features",
        action=argparse.BooleanOptionalAction,
        help="phase 1 on cached frozen feature maps (the backbone runs once per photo; "
        "--epochs then counts passes over the cached maps)",
    )
    add(
        "--objective",
        choices=OBJECTIVES,
        help="softmax (default) or ordinal (regression + QWK-tuned thresholds)",
    )
    add("--regression-loss", choices=REGRESSION_LOSSES, help="loss of the ordinal objective")
    add(
        "--class-weights",
        action=argparse.BooleanOptionalAction,
        help="balance grades with class weights (default on)",
    )
    add("--patience", type=int, help="early-stopping patience in epochs (default 5; 0 = off)")
    add("--seed", type=int, help="random seed for splits, shuffling and weights (default 0)")
    add("--split-seed", type=int, help="seed of the train/val/test split alone (default: --seed)")
    add("--ben-graham", action=argparse.BooleanOptionalAction, help="Ben Graham pre-processing")
    add("--clahe", action=argparse.BooleanOptionalAction, help="CLAHE pre-processing")
    add(
        "--equalize",
        action=argparse.BooleanOptionalAction,
        help="per-channel histogram equalisation inside the fundus (raw and enhanced photos alike)",
    )
    add(
        "--camera-variants",
        type=int,
        help="raw-camera versions made per training photo; each epoch shows one photo in two "
        "as one of them (default 0: off)",
    )
    add(
        "--keep",
        choices=("best", "last"),
        help="the model a run keeps: best (on validation QWK, default) or last (final epoch)",
    )
    add("--val", type=float, help="validation fraction (default 0.15)")
    add("--test", type=float, help="test fraction (default 0.15)")
    add("--train-limit", type=int, help="use at most this many training images")
    add(
        "--target-sensitivity",
        type=float,
        help="choose the referable threshold on validation for this sensitivity (e.g. 0.9)",
    )
    add(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        help="mixed_float16 compute (GPU); the output stays float32",
    )
    add("--distribute", choices=STRATEGIES, help="none (default) or mirrored (all local devices)")
    add("--cache-dir", help="folder for cached crops (default ~/.cache/retinascreen/crops)")
    add("--overwrite", action="store_true", help="start again in an existing run directory")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of ``--config`` (if any) with the given flags applied on top."""
    from retinascreen.training.config import TrainConfig, from_dict, load_config

    base = load_config(args.config) if args.config else TrainConfig()
    given = {name: getattr(args, name) for name in _FLAGS if getattr(args, name, None) is not None}
    return from_dict(given, base)


def run(args: argparse.Namespace) -> int:
    from retinascreen.training.loop import train

    config = config_from_args(args)
    train(config, overwrite=args.overwrite)
    return 0
