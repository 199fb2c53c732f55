"""Head comparison: which classification head grades DR best on the same backbone and data?

Every head gets the same backbone (``mini_xception``, trained from scratch), the same data
(``synthetic-dr-v1`` written by ``retinascreen.synthetic.write_benchmark``: fixed train/val/test
splits), the same schedule and the same seeds. GAP and Wise-SrNet run with several seeds (the
comparison the Wise-SrNet seed is about), the other heads with the first seed. Prints a Markdown
table of test QWK (mean ± std over seeds), referable-DR AUC, parameters and FLOPs, and writes it
to ``--report``. Finished runs are reused, so an interrupted comparison continues.

    make benchmark-data                                   # data/synthetic-dr-v1 (512 px), once
    .venv/bin/python bench/heads.py --data data/synthetic-dr-v1   # the full comparison (~1 h, 2 cores)
    .venv/bin/python bench/heads.py --heads gap,wise-srnet --seeds 1 --size 64 \\
        --train-limit 40 --limit 40 --epochs 1            # a smoke test (a minute or two)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ALL_HEADS = (
    "gap",
    "gap-dropout",
    "flatten-fc",
    "depthwise",
    "depthwise-nonneg",
    "wise-srnet",
    "wise-srnet-dropout",
)
MULTI_SEED_HEADS = ("gap", "wise-srnet")
BENCHMARK = "synthetic-dr-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        help="an existing synthetic-dr-v1 folder (default: write one at --size under --work)",
    )
    p.add_argument("--size", type=int, default=192, help="input size in pixels (default 192)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run (default 6)")
    p.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="training images per run (default: all 2000 of the benchmark)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=600,
        help="cap on images written per split (default 600; val has 500)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds for the multi-seed heads (gap, wise-srnet); default 3",
    )
    p.add_argument("--heads", default=",".join(ALL_HEADS), help="comma-separated head names")
    p.add_argument("--widths", default="32,64,128", help="mini_xception block widths")
    p.add_argument(
        "--stem-stride",
        type=int,
        default=2,
        choices=(1, 2),
        help="mini_xception stem stride (default 2)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--work",
        default="bench/results/heads",
        help="folder for the data, crop cache and run directories",
    )
    p.add_argument("--report", default="bench/results/heads.md", help="Markdown table to write")
    return p.parse_args(argv)


def ensure_data(work: Path, size: int, limit: int | None) -> Path:
    """The benchmark in APTOS layout at ``size`` px (written once, reused afterwards)."""
    from retinascreen.data.formats import BENCHMARK_MANIFEST
    from retinascreen.synthetic import write_benchmark

    suffix = f"{size}px" + (f"-limit{limit}" if limit else "")
    data = work / f"data-{suffix}"
    if not (data / BENCHMARK_MANIFEST).is_file():
        print(f"writing {BENCHMARK} at {size}px to {data} ...", flush=True)
        write_benchmark(BENCHMARK, data, size=size, limit=limit)
    return data


def run_one(args: argparse.Namespace, data: Path, head: str, seed: int) -> dict:
    from retinascreen.training.config import TrainConfig
    from retinascreen.training.loop import train
    from retinascreen.training.run import BEST_MODEL_FILE, METRICS_FILE

    out = Path(args.work) / "runs" / f"{head}-s{seed}"
    config = TrainConfig(
        data=str(data),
        format="aptos",
        out=str(out),
        backbone="mini_xception",
        head=head,
        size=args.size,
        weights="none",
        widths=[int(w) for w in args.widths.split(",")],
        stem_stride=args.stem_stride,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=seed,
        train_limit=args.train_limit,
        patience=0,
        cache_dir=str(Path(args.work) / "cache"),
    )
    started = time.perf_counter()
    train(config, log=lambda line: print(f"[{head} s{seed}] {line}", flush=True))
    metrics = json.loads((out / METRICS_FILE).read_text())
    return {
        "head": head,
        "seed": seed,
        "qwk": metrics["qwk"],
        "auc": metrics["referable"]["auc"],
        "seconds": time.perf_counter() - started,
        "model": out / BEST_MODEL_FILE,
    }


def model_cost(model_path: Path) -> tuple[int, int | None]:
    from retinascreen.models.build import count_flops, count_params
    from retinascreen.models.engines import load_keras_model

    model = load_keras_model(model_path)
    try:
        flops = count_flops(model)
    except Exception:  # noqa: BLE001 - FLOPs are informative only
        flops = None
    return count_params(model), flops


def mean_std(values: list[float]) -> str:
    """``mean ± std`` of figures over seeds (the value alone for one, n/a for none)."""
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(
    results: list[dict],
    costs: dict[str, tuple[int, int | None]],
    heads: list[str],
    args: argparse.Namespace,
    data_name: str,
) -> str:
    lines = [
        f"Head comparison on {data_name}: mini_xception (widths {args.widths}, stem stride "
        f"{args.stem_stride}) from scratch, {args.size} px, {args.epochs} epochs, "
        f"{args.train_limit or 'all'} training images, batch "
        f"{args.batch_size}, lr {args.lr:g}; test split; QWK mean ± std over seeds.",
        "",
        "| head | seeds | test QWK | referable AUC | params | FLOPs | s / run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for head in heads:
        rows = [r for r in results if r["head"] == head]
        if not rows:
            continue
        aucs = [r["auc"] for r in rows if r["auc"] is not None]
        params, flops = costs[head]
        flops_text = f"{flops / 1e6:,.1f} M" if flops else "n/a"
        lines.append(
            f"| {head} | {len(rows)} | {mean_std([r['qwk'] for r in rows])} | "
            f"{mean_std(aucs)} | {params:,} | {flops_text} | "
            f"{statistics.mean(r['seconds'] for r in rows):.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()]
    unknown = sorted(set(heads) - set(ALL_HEADS))
    if unknown:
        print(f"error: unknown head(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else ensure_data(work, args.size, args.limit)
    from retinascreen.data.formats import BENCHMARK_MANIFEST

    data_name = json.loads((data / BENCHMARK_MANIFEST).read_text()).get("name", BENCHMARK)
    results, costs = [], {}
    for head in heads:
        seeds = range(args.seeds if head in MULTI_SEED_HEADS else 1)
        for seed in seeds:
            results.append(run_one(args, data, head, seed))
        costs[head] = model_cost(results[-1]["model"])
    report = table(results, costs, heads, args, data_name)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report, encoding="utf-8")
    print(report)
    print(f"wrote {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
