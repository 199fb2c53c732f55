"""Candidates for the bundled model, on real photographs: which recipe grades EyePACS best?

Every run trains on ``../shared/data/eyepacs-256`` (4,040 graded EyePACS photos, never copied
into the repository) with one fixed patient-grouped 70/15/15 split (``split_seed`` 0), so runs
differ only in their recipe and seed. A candidate is ``configs/eyepacs.toml`` with a few
settings changed (below), at a smaller input and a shorter schedule than the bundled model so
that the whole comparison fits a CPU session. Each prints and tabulates the *validation* QWK
and referable-DR AUC (mean ± std over seeds; the test split is left for the bundled model)
and writes Markdown tables to ``bench/results/``:

- ``real-candidates.md``: the recipes (objective, class weights, pre-processing);
- ``heads-real.md``: GAP vs Wise-SrNet, same backbone, schedule and seeds (the seed's claim);
- ``pretraining-real.md``: from scratch vs synthetic pre-training then fine-tuning, with the
  same number of epochs in all (the synthetic epochs are shorter: 2,000 photos, not 2,824).

Finished runs are reused, so an interrupted comparison continues where it stopped.

    .venv/bin/python bench/real_models.py                        # everything (~65 min, 2 cores)
    .venv/bin/python bench/real_models.py --only heads --seeds 3
    .venv/bin/python bench/real_models.py --epochs 1 --train-limit 64 --work /tmp/smoke  # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from heads import mean_std  # bench/heads.py: the same table cells

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "eyepacs-256"

# name -> (settings changed from configs/eyepacs.toml, what it tests)
CANDIDATES: dict[str, tuple[dict[str, Any], str]] = {
    "wise-ordinal": ({}, "Wise-SrNet head, regression (MSE), Ben Graham, no class weights"),
    "wise-ordinal-weighted": ({"class_weights": True}, "the same with balanced class weights"),
    "gap-ordinal": ({"head": "gap"}, "GAP head, otherwise the same"),
    "wise-softmax": ({"objective": "softmax"}, "five-way softmax instead of regression"),
    "wise-ordinal-raw": ({"ben_graham": False}, "no Ben Graham (the enhanced crops as given)"),
}
TABLES = {
    "candidates": ["wise-ordinal", "wise-ordinal-weighted", "wise-softmax", "wise-ordinal-raw"],
    "heads": ["wise-ordinal", "gap-ordinal"],
    "pretraining": ["wise-ordinal", "wise-ordinal-pretrained"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(DATA), help="the EyePACS-layout data set")
    p.add_argument("--work", default=str(ROOT / "runs" / "real-models"), help="runs and caches")
    p.add_argument("--size", type=int, default=160, help="input size (default 160)")
    p.add_argument("--epochs", type=int, default=8, help="epochs per run (default 8)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per candidate (default 2)")
    p.add_argument("--head-seeds", type=int, default=3, help="seeds per head (default 3)")
    p.add_argument("--pretrain-epochs", type=int, default=3, help="synthetic epochs (default 3)")
    p.add_argument("--train-limit", type=int, default=None, help="training photos per run")
    p.add_argument("--only", choices=sorted(TABLES), help="one comparison only")
    p.add_argument("--results", default=str(ROOT / "bench" / "results"))
    return p.parse_args(argv)


def _config(args: argparse.Namespace, changes: dict[str, Any], out: Path, seed: int) -> Any:
    from retinascreen.training.config import load_config

    config = load_config(ROOT / "configs" / "eyepacs.toml")
    return config.replace(
        data=args.data,
        out=str(out),
        size=args.size,
        epochs=args.epochs,
        seed=seed,
        split_seed=0,
        train_limit=args.train_limit,
        patience=0,
        cache_dir=str(Path(args.work) / "cache"),
    ).replace(**changes)


def _train(config: Any, label: str) -> float:
    from retinascreen.training.loop import train
    from retinascreen.training.run import METRICS_FILE

    out = Path(config.out)
    if (out / METRICS_FILE).is_file():
        return json.loads((out / "timing.json").read_text())["seconds"]
    started = time.perf_counter()
    train(config, log=lambda line: print(f"[{label}] {line}", flush=True))
    seconds = time.perf_counter() - started
    (out / "timing.json").write_text(json.dumps({"seconds": seconds}) + "\n")
    return seconds


def pretrained_weights(args: argparse.Namespace, seed: int) -> tuple[Path, float]:
    """A wise-ordinal model trained on the synthetic benchmark at the same size (reused)."""
    from retinascreen.synthetic import write_benchmark
    from retinascreen.training.run import BEST_MODEL_FILE

    work = Path(args.work)
    data = work / f"synthetic-{args.size}px"
    if not (data / "manifest.json").is_file():
        print(f"writing synthetic-dr-v1 at {args.size} px to {data} ...", flush=True)
        write_benchmark("synthetic-dr-v1", data, size=args.size)
    out = work / "runs" / f"synthetic-pretrain-s{seed}"
    config = _config(args, {}, out, seed).replace(
        data=str(data), format="aptos", epochs=args.pretrain_epochs
    )
    seconds = _train(config, f"pretrain s{seed}")
    return out / BEST_MODEL_FILE, seconds


def run(args: argparse.Namespace, name: str, seed: int) -> dict[str, Any]:
    """Train one candidate (reused when done) and return its validation figures."""
    work = Path(args.work) / "runs"
    seconds_before = 0.0
    if name == "wise-ordinal-pretrained":
        weights, seconds_before = pretrained_weights(args, seed)
        changes: dict[str, Any] = {
            "weights": str(weights),
            "schedule": "full",
            "epochs": max(1, args.epochs - args.pretrain_epochs),
        }
    else:
        changes = CANDIDATES[name][0]
    out = work / f"{name}-s{seed}"
    seconds = _train(_config(args, changes, out, seed), f"{name} s{seed}") + seconds_before
    metrics = json.loads((out / "metrics.json").read_text())
    val = metrics.get("val", {})
    return {
        "name": name,
        "seed": seed,
        "val_qwk": val.get("qwk", metrics.get("val_qwk")),
        "val_auc": val.get("referable_auc"),
        "seconds": seconds,
    }


def _mean_std(values: list[float | None]) -> str:
    return mean_std([v for v in values if v is not None])


def table(
    results: list[dict[str, Any]], names: list[str], title: str, args: argparse.Namespace
) -> str:
    lines = [
        title,
        "",
        "| candidate | what | seeds | val QWK | val referable AUC | min / run |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in names:
        rows = [r for r in results if r["name"] == name]
        if not rows:
            continue
        what = (
            f"{args.pretrain_epochs} epochs on synthetic-dr-v1 (2,000 synthetic photos), then "
            f"{args.epochs - args.pretrain_epochs} on the real ones (~10 % fewer steps in all)"
            if name == "wise-ordinal-pretrained"
            else CANDIDATES[name][1]
        )
        lines.append(
            f"| {name} | {what} | {len(rows)} | {_mean_std([r['val_qwk'] for r in rows])} | "
            f"{_mean_std([r['val_auc'] for r in rows])} | "
            f"{statistics.mean(r['seconds'] for r in rows) / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.data).is_dir():
        print(f"error: {args.data} not found (the real photographs are in ../shared/data)")
        return 2
    common = (
        f"mini_xception (stem stride 2) from scratch on EyePACS-256 ({args.data}), "
        f"{args.size} px, {args.epochs} epochs, batch 32, lr 0.002, fixed patient-grouped split "
        f"(split_seed 0); validation split (608 photos); mean ± std over seeds. "
        f"Measured with `python bench/real_models.py` on 2 CPU cores."
    )
    plans = {
        "heads": [(n, s) for n in TABLES["heads"] for s in range(args.head_seeds)],
        "candidates": [(n, s) for n in TABLES["candidates"] for s in range(args.seeds)],
        "pretraining": [(n, s) for n in TABLES["pretraining"] for s in range(args.seeds)],
    }
    order = [args.only] if args.only else ["heads", "candidates", "pretraining"]
    results: dict[tuple[str, int], dict[str, Any]] = {}
    for key in order:
        for name, seed in plans[key]:
            if (name, seed) not in results:
                results[(name, seed)] = run(args, name, seed)
        rows = [results[item] for item in plans[key]]
        text = table(rows, TABLES[key], f"{key.capitalize()} on real photographs: {common}", args)
        path = (
            Path(args.results) / f"{'real-candidates' if key == 'candidates' else key + '-real'}.md"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(text, flush=True)
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
