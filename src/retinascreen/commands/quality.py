"""``retinascreen quality IMAGE...``: is each photo a gradable fundus photograph?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from retinascreen.commands._files import expand_images, for_each_image

EXAMPLE = """example:
  retinascreen quality photos/*.jpg
  {"path": "photos/eye1.jpg", "gradable": true, "score": 0.93, "reasons": [], "measures": {...}, "label": "good"}
  {"path": "photos/eye2.jpg", "gradable": false, "score": 0.21, "reasons": ["too dark"], "measures": {...}, "label": "reject"}

A file that is not an image, or a photo that shows no fundus, also gets an 'error:' line on
stderr and makes the exit status 2; the other files are still judged."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quality",
        help="judge whether fundus photos are gradable (JSON lines)",
        description="Print one JSON object per photo: path, gradable, score (0..1; >= 0.5 is "
        "gradable), reasons (no fundus disc found, too dark, over-exposed, blurred, "
        "low contrast, poor overall quality (learned score)), the measures and EyeQ's "
        "three-way label (good, usable, reject).",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files or folders")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.data.photo import FundusPhoto

    def judge(path: Path) -> None:
        photo = FundusPhoto.read(path)
        print(json.dumps({"path": str(path), **photo.quality.to_dict()}), flush=True)
        photo.require_fundus()  # the verdict is printed, then the refusal's error line

    return for_each_image(expand_images(args.images), judge, what="quality")
