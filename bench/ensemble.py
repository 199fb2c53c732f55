"""Regression runs alone and averaged: validation and test QWK and referable AUC, side by side.

Each run's ``best.keras`` (a regression model ending in ``OrdinalProbabilities``) scores the
validation and test crops of the first run's configuration (same split and pre-processing);
for every run and every combination of runs the scores are averaged, the grade thresholds and
temperature are refitted on validation (:func:`retinascreen.models.ordinal.fit_ordinal`, as
training does), and QWK (median grade) and referable AUC are printed for both splits.

    PYTHONPATH=src .venv/bin/python bench/ensemble.py runs/eyepacs-lite-2 runs/eyepacs-lite-full
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def run_scores(runs: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Truth grades per split, and each run's regression scores per split."""
    from retinascreen.models.engines import load_keras_model
    from retinascreen.models.ordinal import scores_model
    from retinascreen.training.config import load_config
    from retinascreen.training.data import load_splits, make_datasets
    from retinascreen.training.evaluation import predict_dataset

    config = load_config(runs[0] / "config.toml")
    datasets = make_datasets(config, load_splits(config, lambda _: None))
    truth: dict[str, np.ndarray] = {}
    scores: dict[str, dict[str, np.ndarray]] = {}
    for run in runs:
        scorer = scores_model(load_keras_model(run / "best.keras"))
        scores[run.name] = {}
        for split, ds in (("val", datasets.val), ("test", datasets.test)):
            y, s = predict_dataset(scorer, ds)
            truth[split], scores[run.name][split] = y, s.reshape(-1)
    return truth, scores


def figures(truth: dict[str, np.ndarray], averaged: dict[str, np.ndarray]) -> list[float]:
    """Validation and test QWK and referable AUC with thresholds fitted on validation."""
    from sklearn.metrics import roc_auc_score

    from retinascreen.grading import predicted_grades
    from retinascreen.models.metrics import quadratic_kappa, referable_scores
    from retinascreen.models.ordinal import fit_ordinal, ordinal_probabilities

    thresholds, temperature = fit_ordinal(truth["val"], averaged["val"])
    out = []
    for split in ("val", "test"):
        p = ordinal_probabilities(averaged[split], thresholds, temperature)
        y = truth[split]
        out += [
            quadratic_kappa(y, predicted_grades(p, "median")),
            float(roc_auc_score(y >= 2, referable_scores(p))),
        ]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run directories")
    args = parser.parse_args()
    truth, scores = run_scores(args.runs)
    print("| runs | validation QWK | validation AUC | test QWK | test AUC |")
    print("|---|---|---|---|---|")
    names = list(scores)
    for k in range(1, len(names) + 1):
        for combo in itertools.combinations(names, k):
            averaged = {s: np.mean([scores[n][s] for n in combo], axis=0) for s in truth}
            row = " | ".join(f"{v:.3f}" for v in figures(truth, averaged))
            print(f"| {' + '.join(combo)} | {row} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
