"""``retinascreen preprocess IMAGE... --out DIR``: the square fundus crops a model would see."""

from __future__ import annotations

import argparse
from pathlib import Path

from retinascreen.commands._files import expand_images, for_each_image
from retinascreen.errors import ConfigError, RetinascreenError

EXAMPLE = """example:
  retinascreen preprocess photos/*.jpg --out crops --size 512 --ben-graham
  crops/eye1.png
  crops/eye2.png

Each output is <stem>.png, written to a temporary file and renamed, so nothing half-written
is left behind. Bad files get an 'error:' line on stderr and exit status 2; the others are
still written."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="crop, square and resize fundus photos as a model sees them",
        description="Find the circular fundus field of view, crop a square centred on it "
        "(padding where the disc is clipped), resize it, optionally apply Ben Graham's "
        "local-colour normalisation and CLAHE, and write <stem>.png into --out.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files or folders")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    parser.add_argument(
        "--size", type=int, default=299, metavar="S", help="output side in pixels (default 299)"
    )
    parser.add_argument(
        "--ben-graham",
        action="store_true",
        help="Ben Graham local-colour normalisation (4*img - 4*blur + 128)",
    )
    parser.add_argument("--clahe", action="store_true", help="CLAHE on the lightness channel")
    parser.add_argument(
        "--equalize", action="store_true", help="per-channel histogram equalisation in the fundus"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.data.fundus import Preprocessing
    from retinascreen.data.images import save_image
    from retinascreen.data.photo import FundusPhoto

    if args.size < 8 or args.size > 8192:
        raise ConfigError(f"--size must be between 8 and 8192 pixels, got {args.size}")
    steps = Preprocessing(
        size=args.size, ben_graham=args.ben_graham, clahe=args.clahe, equalize=args.equalize
    )
    args.out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def process(path: Path) -> None:
        target = args.out / f"{path.stem}.png"
        if target.name in written:
            raise RetinascreenError(
                f"{path}: would overwrite {target} already written from {written[target.name]}; "
                "rename one of them"
            )
        photo = FundusPhoto.read(path)
        photo.require_fundus()
        save_image(target, photo.crop(steps))
        written[target.name] = path
        print(target, flush=True)

    return for_each_image(expand_images(args.images), process, what="preprocess")
