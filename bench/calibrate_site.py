"""Site recalibration on a held-out half: calibrate on half the patients, evaluate on the other.

Run: ``PYTHONPATH=src .venv/bin/python bench/calibrate_site.py MODEL [--data
../shared/data/srahim-dr --format folders] [--target-sensitivity 0.9] [--seed 0] [--json F]``.

The data set's patients (both eyes together) are split in two halves, stratified by whether
the patient has a referable eye. ``retinascreen calibrate``'s own code
(:func:`retinascreen.serving.calibration.calibrate_model`) recalibrates MODEL on half A and
writes the copy to a temporary folder; both models, each through its own :class:`Predictor`
(so with its own temperature and threshold), then grade half B. Printed: threshold,
temperature, offset (ordinal models), sensitivity, specificity, AUC and QWK with 95 % bootstrap
intervals over patients, the share referred, the top-label ECE and the referable probability's
Brier score, on A (where it was fitted) and on B (unseen). Ungradable photos are left out of
both halves, as calibrate leaves them out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from retinascreen.data.datasets import Record, load_dataset  # noqa: E402
from retinascreen.grading import REFERABLE_MIN_GRADE, grade_rule  # noqa: E402
from retinascreen.models.metrics import DEFAULT_REFERABLE_THRESHOLD  # noqa: E402
from retinascreen.serving.calibration import (  # noqa: E402
    BOOTSTRAP_RESAMPLES,
    calibrate_model,
    run_sample,
    site_figures,
)
from retinascreen.serving.predictor import Predictor  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "srahim-dr"


def split_patients(records: list[Record], seed: int) -> tuple[list[Record], list[Record]]:
    """Two halves by patient, each with about half the patients who have a referable eye."""
    by_patient: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        by_patient[r.patient].append(r)
    rng = np.random.default_rng(seed)
    halves: tuple[list[Record], list[Record]] = ([], [])
    for referable in (True, False):
        group = sorted(
            p
            for p, rs in by_patient.items()
            if (max(r.grade for r in rs) >= REFERABLE_MIN_GRADE) == referable
        )
        rng.shuffle(group)
        for i, patient in enumerate(group):
            halves[i % 2].extend(by_patient[patient])
    return halves


def figures(predictor: Predictor, records: list[Record], resamples: int) -> dict[str, Any]:
    sample = run_sample(predictor, records)
    threshold = predictor.referable_threshold
    found = site_figures(
        sample.grades,
        sample.probabilities,
        sample.patients,
        threshold=DEFAULT_REFERABLE_THRESHOLD if threshold is None else threshold,
        rule=grade_rule(predictor.card.objective if predictor.card else None),
        resamples=resamples,
    )
    found["temperature"] = predictor.output_temperature
    found["offset"] = predictor.output_offset
    found["photos"], found["patients"] = len(sample.grades), len(set(sample.patients))
    found["ungradable"] = sample.ungradable
    return found


def cell(f: dict[str, Any], key: str) -> str:
    value = f.get(key)
    if value is None:
        return "n/a"
    if key == "referred":
        return f"{value:.1%}"
    interval = f.get("intervals", {}).get(key)
    text = f"{value:.3f}"
    return f"{text} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else text


def table(columns: dict[str, dict[str, Any]]) -> str:
    keys = ("threshold", "temperature", "offset", "sensitivity", "specificity", "auc", "qwk")
    keys += ("referred",)
    rows = [["", *columns]]
    rows.append(
        ["photos / patients", *(f"{c['photos']} / {c['patients']}" for c in columns.values())]
    )
    rows += [[k, *(cell(c, k) for c in columns.values())] for k in keys]
    rows.append(["ECE", *(f"{c['ece']:.3f}" for c in columns.values())])
    rows.append(["referable Brier", *(f"{c['referable_brier']:.3f}" for c in columns.values())])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help=".keras, .onnx or a training run directory")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--format", default="folders")
    parser.add_argument("--target-sensitivity", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES)
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(
            f"error: {args.data} not found (../shared/data/srahim-dr by default)", file=sys.stderr
        )
        return 2
    half_a, half_b = split_patients(load_dataset(args.data, args.format), args.seed)
    original = Predictor(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"calibrated{original.model_path.suffix}"
        result = calibrate_model(
            original.model_path,
            args.data,
            args.format,
            site=f"{args.data.name} half A",
            target_sensitivity=args.target_sensitivity,
            out=out,
            records=half_a,
            resamples=args.bootstrap,
        )
        calibrated = Predictor(out)
        record = result.record
        fit = {"photos": record["photos"], "patients": record["patients"]}
        columns = {
            "A before": {**record["before"], **fit},
            "A after (fit)": {**record["after"], **fit},
            "B before": figures(original, half_b, args.bootstrap),
            "B after (held out)": figures(calibrated, half_b, args.bootstrap),
        }
    print(
        f"{original.model_path} ({original.model_info.name} {original.model_info.version}) on "
        f"{args.data}: patients split in halves (seed {args.seed}); calibrated on A for "
        f"sensitivity {args.target_sensitivity:g}, evaluated on B; gradable photos only; "
        "95 % bootstrap intervals over patients"
    )
    print(table(columns))
    if args.json:
        args.json.write_text(json.dumps(columns, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
