"""``retinascreen synth OUT``: write a synthetic fundus data set or a fixed benchmark."""

from __future__ import annotations

import argparse
import json

from retinascreen.errors import ConfigError

EXAMPLE = """examples:
  retinascreen synth data/synth --n 200 --size 256
  retinascreen synth data/eyepacs --n 100 --layout eyepacs --ungradable 0.1
  retinascreen synth data/bench --benchmark synthetic-dr-v1 --size 256

Lesions are drawn by the ICDR rules (microaneurysms, haemorrhages, exudates, cotton-wool
spots, venous beading, IRMA, new vessels, pre-retinal haemorrhage); camera, colour and
compression vary independently of the grade. Masks go to OUT/masks/<id>_<lesion>.png."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from retinascreen.data.formats import LAYOUTS
    from retinascreen.synthetic import BENCHMARKS

    parser = subparsers.add_parser(
        "synth",
        help="write a synthetic fundus data set (any layout) or benchmark",
        description="Write synthetic colour fundus photographs with DR lesions drawn by the ICDR "
        "rules, their grades in one of the published data-set layouts, and per-lesion masks.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", metavar="OUT", help="output folder (created if missing)")
    parser.add_argument("--n", type=int, help="number of images (pairs of eyes per patient)")
    parser.add_argument(
        "--size", type=int, default=None, help="image width in pixels, 64..1024 (default 512)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="aptos",
        help="data-set layout (default aptos; idrid writes IDRiD's training set)",
    )
    parser.add_argument(
        "--folder-names",
        choices=("kaggle", "numeric"),
        default="kaggle",
        help="folders layout: No_DR..Proliferate_DR (kaggle, default) or 0..4",
    )
    parser.add_argument(
        "--ungradable",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of ungradable photos: dark, over-exposed, blurred, occluded",
    )
    parser.add_argument(
        "--benchmark", choices=sorted(BENCHMARKS), help="write a fixed benchmark instead"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="benchmark: at most this many images per split"
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="processes (default: 2 for large sets)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from retinascreen.data.formats import BENCHMARK_MANIFEST, SYNTHETIC_MANIFEST
    from retinascreen.grading import LABELS
    from retinascreen.synthetic import write_benchmark, write_dataset

    if args.benchmark:
        if args.n is not None:
            raise ConfigError(
                "--n and --benchmark do not go together (a benchmark has fixed sizes)"
            )
        out = write_benchmark(
            args.benchmark, args.out, size=args.size, limit=args.limit, workers=args.workers
        )
        manifest = json.loads((out / BENCHMARK_MANIFEST).read_text())
        print(
            f"wrote benchmark {manifest['name']} to {out} (aptos layout, {manifest['size']} px, "
            f"split column in train.csv)"
        )
        for split, c in manifest["counts"].items():
            print(
                f"  {split}: {c['n']} images, grades "
                + ", ".join(f"{g}: {k}" for g, k in c["grades"].items())
            )
        return 0
    if args.n is None:
        raise ConfigError("give --n N (number of images) or --benchmark NAME")
    if args.limit is not None:
        raise ConfigError("--limit only applies to --benchmark")
    out = write_dataset(
        args.out,
        args.n,
        size=args.size or 512,
        seed=args.seed,
        layout=args.layout,
        ungradable=args.ungradable,
        folder_names=args.folder_names,
        workers=args.workers,
    )
    manifest = json.loads((out / SYNTHETIC_MANIFEST).read_text())
    print(
        f"wrote {args.n} synthetic images to {out} ({args.layout} layout, {manifest['size']} px, seed {args.seed})"
    )
    for g, k in manifest["grade_counts"].items():
        print(f"  grade {g} {LABELS[int(g)]}: {k}")
    if manifest["ungradable_counts"]:
        print(
            "  ungradable: "
            + ", ".join(f"{k} {v}" for k, v in sorted(manifest["ungradable_counts"].items()))
        )
    return 0
