"""``retinascreen export MODEL --format onnx [--int8 --calibration DIR] --out FILE``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """examples:
  retinascreen export runs/xception --format onnx --out xception.onnx
  retinascreen export runs/xception --format onnx --int8 --calibration data/train_images \\
      --out xception-int8.onnx
The export measures grade agreement with the Keras model on held images (every 5th calibration
image, or --check DIR) and refuses, writing nothing, below --min-agreement (98 %).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from retinascreen.serving.export import FORMATS as EXPORT_FORMATS

    parser = subparsers.add_parser(
        "export",
        help="export a model to ONNX (fp32 or int8) for fast CPU inference",
        description="Export a trained model (.keras file or run directory) to ONNX.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help=".keras file or training run directory")
    parser.add_argument("--format", dest="fmt", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--int8", action="store_true", help="static int8 quantisation")
    parser.add_argument("--calibration", type=Path, metavar="DIR", help="calibration photographs")
    parser.add_argument(
        "--check", type=Path, metavar="DIR", help="held photographs for the agreement check"
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.98,
        metavar="F",
        help="least grade agreement with the Keras model (default 0.98)",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="output .onnx file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.serving.export import export_model

    report = export_model(
        args.model,
        args.out,
        fmt=args.fmt,
        int8=args.int8,
        calibration=args.calibration,
        check=args.check,
        min_agreement=args.min_agreement,
        opset=args.opset,
        log=lambda msg: print(msg, file=sys.stderr),
    )
    print(report.summary())
    return 0
