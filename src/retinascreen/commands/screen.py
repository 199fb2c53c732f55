"""``retinascreen screen FOLDER --out results.csv``: batch screening of a folder of photographs."""

from __future__ import annotations

import argparse
from pathlib import Path

from retinascreen.serving.screening import SCREENING_ENGINES

EPILOG = """examples:
  retinascreen screen clinic_photos/ --out results.csv
  retinascreen screen clinic_photos/ --model runs/xception --out results.csv --resume
  RAY_ADDRESS=ray://head-node:10001 retinascreen screen /shared/photos --engine ray \\
      --model /shared/models/xception.onnx --out results.csv

Writes results.csv (one row per image) and results.patients.csv (one row per patient; patient
and eye come from names like 123_left.jpeg or from sub-folders). --resume continues an
interrupted run without repeating done images. With --engine ray, Ray connects to RAY_ADDRESS
(or --ray-address) when given, else starts locally; on a cluster the folder and the model must
be at the same paths on every worker.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "screen",
        help="screen a folder of photographs into a CSV",
        description="Grade every photograph under FOLDER (recursively) into a CSV.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, metavar="FOLDER")
    parser.add_argument(
        "--model", metavar="MODEL", help=".keras, .onnx or run directory (default: demo)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="CSV")
    parser.add_argument("--engine", choices=SCREENING_ENGINES, default="local")
    parser.add_argument("--resume", action="store_true", help="skip images already in the CSV")
    parser.add_argument("--batch-size", type=int, default=16, metavar="N")
    parser.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster address (else RAY_ADDRESS)"
    )
    parser.add_argument(
        "--concurrency", type=int, metavar="N", help="Ray actors (default: CPUs / 2)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.serving.screening import screen

    summary = screen(
        args.folder,
        args.out,
        model=args.model,
        engine=args.engine,
        resume=args.resume,
        batch_size=args.batch_size,
        ray_address=args.ray_address,
        concurrency=args.concurrency,
        progress=True,
    )
    print(summary.text())
    return 0
