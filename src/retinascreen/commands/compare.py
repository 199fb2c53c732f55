"""``retinascreen compare``: one table across training runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from retinascreen.errors import ModelError
from retinascreen.training.run import CONFIG_FILE, METRICS_FILE, MODEL_CARD_FILE

EPILOG = """examples:
  retinascreen compare runs/gap runs/wise-srnet
  retinascreen compare runs/* --markdown > results.md"""

COLUMNS = (
    "run",
    "backbone",
    "head",
    "size",
    "objective",
    "params",
    "QWK",
    "accuracy",
    "ref. AUC",
    "sens.",
    "spec.",
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compare",
        help="compare training runs side by side (QWK, referable AUC, parameters)",
        description="Read metrics.json and model_card.json (or config.toml) of each run "
        "directory and print one table.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="training run directories")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)


def _num(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run_row(run_dir: str | Path) -> dict[str, str]:
    """The table row of one run directory."""
    run = Path(run_dir)
    metrics_file = run / METRICS_FILE
    if not metrics_file.is_file():
        raise ModelError(f"{run}: no {METRICS_FILE} (not a finished training run)")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    info: dict[str, Any] = {}
    if (run / MODEL_CARD_FILE).is_file():
        info = json.loads((run / MODEL_CARD_FILE).read_text(encoding="utf-8"))
    elif (run / CONFIG_FILE).is_file():
        from retinascreen.training.config import load_config

        config = load_config(run / CONFIG_FILE)
        info = {
            "backbone": config.backbone,
            "head": config.head,
            "input_size": config.size,
            "objective": config.objective,
        }
    ref = metrics.get("referable", {})
    params = info.get("params")
    return {
        "run": run.name,
        "backbone": str(info.get("backbone", "?")),
        "head": str(info.get("head", "?")),
        "size": str(info.get("input_size", "?")),
        "objective": str(info.get("objective", "?")),
        "params": f"{params:,}" if isinstance(params, int) else "?",
        "QWK": _num(metrics.get("qwk")),
        "accuracy": _num(metrics.get("accuracy")),
        "ref. AUC": _num(ref.get("auc")),
        "sens.": _num(ref.get("sensitivity")),
        "spec.": _num(ref.get("specificity")),
    }


def format_table(rows: list[dict[str, str]], *, markdown: bool = False) -> str:
    """A plain-text (aligned) or Markdown table of rows."""
    if markdown:
        lines = [
            "| " + " | ".join(COLUMNS) + " |",
            "|"
            + "|".join(
                "---" if c in ("run", "backbone", "head", "objective") else "---:" for c in COLUMNS
            )
            + "|",
        ]
        lines += ["| " + " | ".join(r[c] for c in COLUMNS) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    rows = [run_row(r) for r in args.runs]
    print(format_table(rows, markdown=args.markdown))
    return 0
