"""``retinascreen calibrate``: a copy of a model recalibrated on a site's own graded photos."""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """examples:
  retinascreen calibrate model.onnx --data clinic/ --format folders --site "Clinic A"
  retinascreen calibrate runs/x --data clinic/ --format eyepacs --target-sensitivity 0.95 \\
      --site clinic-a --out runs/x/clinic-a.keras

Writes the calibrated copy (default: <model>-<site>.keras / .onnx beside the model) and
<copy>.calibration.json (the table below, with intervals). predict, evaluate, screen and the
web app use the copy's temperature (and offset) and threshold."""


def register(subparsers: Any) -> None:
    from retinascreen.data.formats import FORMATS
    from retinascreen.serving.calibration import (
        BOOTSTRAP_RESAMPLES,
        DEFAULT_TARGET_SENSITIVITY,
        MIN_PHOTOS,
    )

    p = subparsers.add_parser(
        "calibrate",
        help="recalibrate a model (temperature, offset, referral threshold) on a site's photos",
        description="Run a model on a clinic's own graded sample (a few hundred photos, at "
        f"least {MIN_PHOTOS} gradable, referable and non-referable eyes), fit a temperature "
        "for its grade probabilities (with an offset of the cumulative logits for a regression "
        "model, whose site's photos may all score too high or too low) and the highest "
        "referral threshold that reaches the target sensitivity on the sample, and write a "
        "copy of the model (same file type, same weights) whose model card records the site, "
        "the sample, the date and the figures before and after with 95 % bootstrap intervals "
        "over patients. Ungradable photos are left out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help=".keras, .onnx or a training run directory")
    p.add_argument("--data", required=True, metavar="PATH", help="the site's graded photos")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument(
        "--target-sensitivity",
        type=float,
        default=DEFAULT_TARGET_SENSITIVITY,
        metavar="S",
        help=f"sensitivity for referable DR the threshold must reach on the sample "
        f"(default {DEFAULT_TARGET_SENSITIVITY:g})",
    )
    p.add_argument("--site", metavar="NAME", help="the site's name (default: the data folder's)")
    p.add_argument("--out", metavar="FILE", help="calibrated model file (default beside MODEL)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--batch-size", type=int, default=16, help="images per model call")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=BOOTSTRAP_RESAMPLES,
        metavar="N",
        help=f"bootstrap resamples for the intervals (default {BOOTSTRAP_RESAMPLES})",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.serving.calibration import calibrate_model, format_table

    result = calibrate_model(
        args.model,
        args.data,
        args.format,
        site=args.site,
        target_sensitivity=args.target_sensitivity,
        out=args.out,
        force=args.force,
        batch_size=args.batch_size,
        resamples=args.bootstrap,
    )
    r = result.record
    excluded = []
    if r["ungradable_excluded"]:
        excluded.append(f"{r['ungradable_excluded']} ungradable")
    if r["unreadable_excluded"]:
        excluded.append(f"{r['unreadable_excluded']} unreadable")
    left_out = f" ({', '.join(excluded)} left out)" if excluded else ""
    print(
        f"site {r['site']}: {r['photos']} gradable photos of {r['patients']} patients"
        f"{left_out}; target sensitivity {r['target_sensitivity']:g}"
    )
    print(format_table(r))
    print("(95 % bootstrap intervals over patients; ECE = top-label expected calibration error)")
    print(f"wrote {result.calibrated} and {result.report.name}")
    return 0
