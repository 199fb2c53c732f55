"""``retinascreen evaluate``: metrics of a model on a graded data set (or one of its splits)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """examples:
  retinascreen evaluate runs/mini --data data/synth --format aptos            # its test split
  retinascreen evaluate model.onnx --data messidor2/ --format messidor2 --split all --out eval/
  retinascreen evaluate runs/mini --data data/synth --format aptos --target-sensitivity 0.9
  retinascreen evaluate runs/x --data idrid/ --format idrid-test   # IDRiD's published testing set

Writes metrics.json, confusion.png and roc.png to --out (default: eval-<split> beside the model)."""


def register(subparsers: Any) -> None:
    from retinascreen.data.datasets import EVALUATION_SPLITS
    from retinascreen.data.formats import FORMAT_HELP, FORMATS

    p = subparsers.add_parser(
        "evaluate",
        help="QWK, accuracy, per-grade and referable-DR metrics of a model on a data set",
        description="Evaluate a model (.keras, .onnx or a training run directory) on a graded "
        "data set, with the model card's own pre-processing. --split test/val/train uses the "
        "same patient-grouped split as training (seed and fractions from the run's "
        "config.toml); --split all uses every image (an external test set).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help=".keras, .onnx or a training run directory")
    p.add_argument("--data", required=True, metavar="PATH", help="data set folder")
    p.add_argument("--format", required=True, choices=FORMATS, help=FORMAT_HELP)
    p.add_argument(
        "--split",
        default="test",
        choices=EVALUATION_SPLITS,
        help="which images to evaluate on (default test)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument(
        "--target-sensitivity",
        type=float,
        metavar="S",
        help="choose the referable threshold on the validation split for this "
        "sensitivity (default: the model card's threshold, else 0.5)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per model call")
    p.add_argument("--cache-dir", help="folder for cached crops")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.serving.evaluation import evaluate_model, summary

    metrics, out = evaluate_model(
        args.model,
        args.data,
        args.format,
        split=args.split,
        out=args.out,
        target_sensitivity=args.target_sensitivity,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
    )
    print(f"{args.split} split of {Path(args.data)}: " + summary(metrics))
    print(f"wrote {out / 'metrics.json'}, confusion.png, roc.png")
    return 0
