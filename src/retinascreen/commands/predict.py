"""``retinascreen predict [MODEL] IMAGE...``: grade photographs and print the top grades."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from retinascreen.models.engines import MODEL_ENGINES

if TYPE_CHECKING:
    from retinascreen.result import Prediction, PreparedImage
    from retinascreen.serving.predictor import Predictor

EPILOG = """examples:
  retinascreen predict eye1.png eye2.jpg                  # the bundled demo model
  retinascreen predict runs/xception eye1.png --top 3
  retinascreen predict model.onnx photos/*.jpeg --json > results.jsonl
  retinascreen predict runs/xception eye1.png --cam heatmaps/
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="grade fundus photographs with a model",
        description=(
            "Grade fundus photographs for diabetic retinopathy. MODEL (a .keras file, an .onnx "
            "file or a training run directory) is optional: when the first argument is not a "
            "model, every argument is an image and the bundled demo model is used."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="[MODEL] IMAGE", help="optional model, then images"
    )
    parser.add_argument("--json", action="store_true", help="one JSON result per line")
    parser.add_argument(
        "--top", type=int, default=3, metavar="K", help="grades to list (default 3)"
    )
    parser.add_argument(
        "--cam", type=Path, metavar="DIR", help="write Grad-CAM overlays <stem>_cam.png here"
    )
    parser.add_argument(
        "--engine",
        choices=MODEL_ENGINES,
        default="auto",
        help="run the model with Keras or ONNX Runtime (default: ONNX when available)",
    )
    parser.set_defaults(func=run)


def is_model_argument(arg: str) -> bool:
    """Whether a positional argument names a model rather than an image."""
    from retinascreen.models.engines import MODEL_SUFFIXES, is_run_directory

    return Path(arg).suffix.lower() in MODEL_SUFFIXES or is_run_directory(arg)


def format_human(path: str, result: Prediction, top: int) -> str:
    """The classify_image.py-style text block for one result."""
    from retinascreen.grading import label

    probs = result.probabilities
    lines = [path]
    ranked = sorted(range(len(probs)), key=lambda g: -probs[g])
    for rank, grade in enumerate(ranked[: max(1, top)], start=1):
        lines.append(f"  {rank}. grade {grade} {label(grade)}: {probs[grade]:.2%}")
    ref = "yes" if result.referable else "no"
    lines.append(f"  referable: {ref} (p={result.referable_probability:.2f})")
    if result.referral_note:
        lines.append(f"  why: {result.referral_note}")
    q = result.quality
    if result.gradable:
        lines.append(f"  quality: gradable (score {q.score:.2f})")
    else:
        lines.append(
            "  quality: UNGRADABLE - retake the photograph "
            f"({', '.join(q.reasons)}; score {q.score:.2f})"
        )
    if result.warning:
        lines.append(f"  warning: {result.warning}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from retinascreen.errors import RetinascreenError
    from retinascreen.serving.predictor import Predictor
    from retinascreen.serving.step import screen_photo

    paths = list(args.paths)
    model = paths.pop(0) if is_model_argument(paths[0]) else None
    if not paths:
        from retinascreen.errors import ConfigError

        raise ConfigError("no images given (usage: retinascreen predict [MODEL] IMAGE...)")
    predictor = Predictor(model, engine=args.engine)
    if args.cam:
        args.cam.mkdir(parents=True, exist_ok=True)
    if not args.json:  # what the model is, beside (not inside) the results on stdout
        print(f"model: {predictor.model_info.notice}", file=sys.stderr, flush=True)
    failures = 0
    for path in paths:
        try:
            screened = screen_photo(path, predictor)  # not-a-fundus refused there
            result = screened.prediction
            if args.cam:
                _write_cam(predictor, screened.prepared, Path(path), args.cam)
        except RetinascreenError as exc:
            failures += 1
            message = str(exc)
            named = str(path) in message or Path(path).name in message
            print(f"error: {message}" if named else f"error: {path}: {message}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps({"path": path, **result.to_dict()}), flush=True)
        else:
            print(format_human(path, result, args.top), flush=True)
    return 2 if failures else 0


def _write_cam(predictor: Predictor, prepared: PreparedImage, path: Path, folder: Path) -> Path:
    from retinascreen.data.images import save_image

    out = folder / f"{path.stem}_cam.png"
    save_image(out, predictor.heatmap(prepared))
    return out
