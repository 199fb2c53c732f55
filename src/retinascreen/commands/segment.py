"""``retinascreen segment [MODEL] IMAGE... --out DIR``: vessel and lesion maps as PNG files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from retinascreen.models.engines import BUNDLED_SEGMENTERS

if TYPE_CHECKING:
    from retinascreen.serving.segmenter import Segmentation, Segmenter

EPILOG = """examples:
  retinascreen segment eye1.png eye2.jpg --out maps/               # bundled vessel model
  retinascreen segment photos/ --out maps/ --what lesions          # bundled lesion model
  retinascreen segment runs/unet/best.keras eye1.png --out maps/

files per photo: <stem>_vessels.png (probability x 255), <stem>_vessels_mask.png (0/255 at
the model card's threshold), <stem>_vessels_overlay.png; for lesion models
<stem>_lesions_<type>.png per lesion type and <stem>_lesions_overlay.png. The maps have the
photo's own size and lie on it pixel for pixel (0 outside the fundus field); --frame crop
writes them on the model's square fundus crop instead.
"""
FRAMES = ("photo", "crop")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="draw vessel or lesion maps of fundus photographs",
        description=(
            "Write vessel or lesion probability maps, masks and overlays of fundus photographs. "
            "MODEL (a segmentation .keras or .onnx file) is optional: without it the bundled "
            "model chosen by --what is used. Folders are searched for images."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths", nargs="+", metavar="[MODEL] IMAGE", help="optional model, then images"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--what",
        choices=BUNDLED_SEGMENTERS,
        default="vessels",
        help="which bundled model to use without MODEL (default: vessels)",
    )
    parser.add_argument(
        "--frame",
        choices=FRAMES,
        default="photo",
        help="photo: maps at the photo's size and position (default); crop: on the model's "
        "square fundus crop",
    )
    parser.add_argument(
        "--one-pass",
        action="store_true",
        help="one model pass per photo even when the model's card averages the maps of the "
        "photo and its mirror image (the bundled lesion model does): about half the time",
    )
    parser.set_defaults(func=run)


def output_files(stem: str, result: Segmentation) -> dict[str, object]:
    """File name -> image (uint8 array) for one photo's maps, masks and overlay."""
    import numpy as np

    files: dict[str, object] = {}
    lesions = [name for name in result.maps if name != "vessels"]
    if "vessels" in result.maps:
        files[f"{stem}_vessels.png"] = _to_8bit(result.maps["vessels"])
        files[f"{stem}_vessels_mask.png"] = result.masks["vessels"].astype(np.uint8) * 255
    for name in lesions:
        files[f"{stem}_lesions_{name}.png"] = _to_8bit(result.maps[name])
    kind = "lesions" if lesions else "vessels"
    files[f"{stem}_{kind}_overlay.png"] = result.overlay()
    return files


def _to_8bit(probabilities: object) -> object:
    import numpy as np

    return np.clip(np.asarray(probabilities) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> int:
    from retinascreen.commands._files import expand_images, for_each_image
    from retinascreen.commands.predict import is_model_argument
    from retinascreen.errors import ConfigError
    from retinascreen.serving.segmenter import Segmenter

    arguments = list(args.paths)
    model = arguments.pop(0) if is_model_argument(arguments[0]) else None
    paths = expand_images(arguments)
    if not paths:
        raise ConfigError(
            "no images given (usage: retinascreen segment [MODEL] IMAGE... --out DIR)"
        )
    segmenter = Segmenter(model, args.what, flip_average=not args.one_pass)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"model: {_describe(segmenter)}", file=sys.stderr, flush=True)

    written: list[Path] = []

    def work(path: Path) -> None:
        _write(segmenter, path, args.out, in_photo_frame=args.frame == "photo")
        written.append(path)

    status = for_each_image(paths, work, what="segment")
    print(f"wrote the maps of {len(written)} photo(s) to {args.out}", file=sys.stderr)
    return status


def _describe(segmenter: Segmenter) -> str:
    info = segmenter.model_info
    text = f"{info.name} {info.version} ({', '.join(segmenter.classes)})"
    if segmenter.synthetic:
        text += ": learned from synthetic photos only"
    return text


def _write(segmenter: Segmenter, path: Path, out: Path, *, in_photo_frame: bool = True) -> None:
    from retinascreen.data.images import save_image
    from retinascreen.errors import RetinascreenError

    try:
        result = segmenter.segment(path)
    except RetinascreenError as exc:
        if str(path) in str(exc) or path.name in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from exc
    if in_photo_frame:
        result = result.in_photo_frame()
    for name, image in output_files(path.stem, result).items():
        save_image(out / name, image)  # type: ignore[arg-type]
