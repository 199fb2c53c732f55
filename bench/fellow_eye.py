"""Does the fellow eye's photo help decide an eye's referral? Measured on the bundled model.

Diabetic retinopathy is usually present in both eyes, so an eye's referable probability could
borrow from its fellow eye's (binocular models do). This blends each eye's referable logit with
its fellow's, ``(1 - w) * own + w * fellow``, with ``w`` chosen on the EyePACS-256 validation
split (the model card's split), and prints the referable AUC per eye and per patient (a patient
is referable when either eye is; the patient's score is the higher of the two eyes') on the
validation and test splits and on srahim-dr (raw photos of both eyes from another clinic; never
trained or tuned on), without and with the blend. What a screening programme decides is the
patient's referral: a gain per eye that does not reach the patient changes no decision.

    PYTHONPATH=src .venv/bin/python bench/fellow_eye.py [MODEL]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from retinascreen.data.datasets import Record, load_dataset, split_dataset  # noqa: E402
from retinascreen.grading import REFERABLE_MIN_GRADE  # noqa: E402
from retinascreen.models.metrics import referable_scores  # noqa: E402
from retinascreen.serving.predictor import Predictor  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
WEIGHTS = np.round(np.arange(0.0, 0.65, 0.05), 2)


def logits(predictor: Predictor, records: list[Record]) -> np.ndarray:
    results = predictor.predict_batch([r.path for r in records])
    p = np.clip(referable_scores(np.array([r.probabilities for r in results])), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def photos_by_patient(records: list[Record]) -> list[list[int]]:
    """The indices of each patient's photos."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[str(r.patient)].append(i)
    return list(groups.values())


def fellows(groups: list[list[int]], n: int) -> np.ndarray:
    """Index of each of ``n`` photos' fellow eye (same patient, the other photo); itself when
    none."""
    out = np.arange(n)
    for members in groups:
        if len(members) == 2:
            out[members[0]], out[members[1]] = members[1], members[0]
    return out


def aucs(records: list[Record], own: np.ndarray, w: float) -> tuple[float, float]:
    """Referable AUC per eye and per patient (either eye referable; the higher score)."""
    from sklearn.metrics import roc_auc_score

    groups = photos_by_patient(records)
    score = (1 - w) * own + w * own[fellows(groups, len(records))]
    truth = np.array([r.grade >= REFERABLE_MIN_GRADE for r in records])
    patient_truth = [truth[m].any() for m in groups]
    patient_score = [score[m].max() for m in groups]
    return float(roc_auc_score(truth, score)), float(roc_auc_score(patient_truth, patient_score))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=None, help="model (default: bundled)")
    args = parser.parse_args()
    if not (SHARED / "eyepacs-256").is_dir():
        print(f"error: {SHARED / 'eyepacs-256'} not found", file=sys.stderr)
        return 2
    predictor = Predictor(args.model)
    config = predictor.card.extra.get("config", {}) if predictor.card else {}
    splits = split_dataset(
        load_dataset(SHARED / "eyepacs-256", "eyepacs"),
        val=config.get("val", 0.15),
        test=config.get("test", 0.15),
        seed=config.get("split_seed", config.get("seed", 0)),
    )
    sets = {"EyePACS validation": splits["val"], "EyePACS test": splits["test"]}
    if (SHARED / "srahim-dr").is_dir():
        sets["srahim-dr"] = load_dataset(SHARED / "srahim-dr", "folders")
    own = {name: logits(predictor, records) for name, records in sets.items()}
    val = sets["EyePACS validation"]
    w = max(WEIGHTS, key=lambda x: aucs(val, own["EyePACS validation"], float(x))[0])
    print(f"model: {predictor.model_info.notice}")
    print(f"fellow-eye weight chosen on validation (per-eye AUC): w = {w:g}\n")
    print(
        "| photos | eyes / patients | per-eye AUC: own / blended | per-patient AUC: own / blended |"
    )
    print("|---|---|---|---|")
    for name, records in sets.items():
        eye0, patient0 = aucs(records, own[name], 0.0)
        eye1, patient1 = aucs(records, own[name], float(w))
        patients = len({r.patient for r in records})
        print(
            f"| {name} | {len(records)} / {patients} | {eye0:.3f} / {eye1:.3f} "
            f"| {patient0:.3f} / {patient1:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
