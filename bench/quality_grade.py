"""Does the grading model learn "poor photo -> severe DR", and does training on gradable photos
only counter it?

58 % of the EyePACS-256 grade-4 photos that EyeQ's graders labelled are "Reject" quality, so a
model can learn image quality as a sign of disease. This bench trains the product's head
(Wise-SrNet, regression objective) on the frozen ImageNet Lite0 features of
``bench/transfer.py`` (equalised 256 px input, cached) two ways, several seeds each:

- ``all``: every training photo (as the bundled model was trained);
- ``gradable``: only the training photos the product's own quality gate passes
  (``retinascreen.data.quality.assess_quality``; the gate refuses the rest as "retake" anyway,
  so the model never needs to grade them);

and reports test QWK / referable AUC, srahim-dr (raw photos of another clinic, never trained
on) AUC / sensitivity / specificity at the threshold chosen on validation for 90 %
sensitivity, and the entanglement itself: among the test split's non-referable eyes (truth
grade 0-1) that EyeQ graders labelled, the share referred per quality label (Good, Usable,
Reject). No quality entanglement means about the same share for each label. The gate's
verdicts are cached in ``runs/transfer/gate.json``. Note: part of these test photos were in
the quality model's EyeQ training folds (that split is not the grading split).

    python bench/quality_grade.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import photo_sets as sets  # noqa: E402

from transfer import (  # noqa: E402
    CACHE,
    features,
    graded_records,
    head_scores,
    mean_sd,
    ordinal_fit,
    score_row,
)

RESULTS = Path(__file__).resolve().parent / "results" / "quality-grade.md"
LABELS = ("Good", "Usable", "Reject")


def gate_verdicts(records: list) -> np.ndarray:
    """Whether the product's quality gate passes each record's photo (cached by file name)."""
    from concurrent.futures import ThreadPoolExecutor

    from retinascreen.data.images import load_image
    from retinascreen.data.quality import assess_quality

    path = CACHE / "gate.json"
    cached: dict[str, bool] = json.loads(path.read_text()) if path.is_file() else {}
    todo = [r for r in records if Path(r.path).name not in cached]
    if todo:
        with ThreadPoolExecutor(2) as pool:
            verdicts = pool.map(lambda r: assess_quality(load_image(r.path)).gradable, todo)
            cached.update({Path(r.path).name: bool(v) for r, v in zip(todo, verdicts, strict=True)})
        path.write_text(json.dumps(cached))
    return np.array([cached[Path(r.path).name] for r in records])


def eyeq_labels(records: list) -> np.ndarray:
    """EyeQ's label per record ('' where the photo is not labelled)."""
    labels = sets.eyeq_quality()
    return np.array([labels.get(Path(r.path).stem, "") for r in records])


def referred_by_label(
    scores: dict[str, np.ndarray], grades: dict[str, np.ndarray], labels: np.ndarray
) -> dict[str, float]:
    """Share of the test split's non-referable eyes referred, per EyeQ label."""
    from retinascreen.models.metrics import referable_scores

    probs, cut = ordinal_fit(scores, grades)
    referred = referable_scores(probs["test"]) >= cut
    healthy = grades["test"] < 2
    return {name: float(np.mean(referred[healthy & (labels == name)])) for name in LABELS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--head", default="wise-srnet")
    args = parser.parse_args(argv)
    loaded = graded_records()
    if loaded is None:
        return 2
    records, grades = loaded
    feats = features("efficientnet_lite0", "equalize", 256, records)
    started = time.perf_counter()
    passed = gate_verdicts(records["train"])
    print(
        f"gate: {passed.sum()} of {len(passed)} training photos pass "
        f"({time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    labels = eyeq_labels(records["test"])
    healthy = grades["test"] < 2
    counts = {name: int(np.sum(healthy & (labels == name))) for name in LABELS}
    train_labels = eyeq_labels(records["train"])
    grade4 = grades["train"] == 4
    share = np.mean(train_labels[grade4 & (train_labels != "")] == "Reject")
    kept4 = np.mean(passed[grade4])
    lines = [
        "| training photos | seeds | test QWK | test AUC | srahim AUC | srahim sens. | "
        "srahim spec. | "
        + " | ".join(f"referred, grade 0-1 {n} (n={counts[n]})" for n in LABELS)
        + " |",
        "|---" * (6 + len(LABELS)) + "|---|",
    ]
    raw: dict[str, list[dict[str, float]]] = {}
    for name, weights in (("all", None), ("gradable", passed.astype(np.float32))):
        rows = []
        for seed in args.seeds:
            scores = head_scores(args.head, feats, grades, seed, train_weights=weights)
            row = score_row(scores, grades)
            row.update(
                {f"referred_{k}": v for k, v in referred_by_label(scores, grades, labels).items()}
            )
            rows.append(row)
            print(f"  {name} seed {seed}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
        raw[name] = rows

        n_train = len(passed) if weights is None else int(passed.sum())
        keys = ("test_qwk", "test_auc", "srahim_auc", "srahim_sens", "srahim_spec")
        lines.append(
            f"| {name} ({n_train}) | {len(rows)} | "
            + " | ".join(mean_sd(rows, k) for k in keys)
            + " | "
            + " | ".join(mean_sd(rows, f"referred_{n}") for n in LABELS)
            + " |"
        )
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    (CACHE / "quality-grade.json").write_text(json.dumps(raw, indent=1))
    header = (
        '# Quality and grade: is "poor photo -> severe DR" learned, and countered?\n\n'
        f"`python bench/quality_grade.py --seeds {' '.join(map(str, args.seeds))}` "
        f"({time.strftime('%Y-%m-%d')}, 2 CPU cores shared with other jobs). Frozen ImageNet "
        f"Lite0 features (equalised 256 px, `bench/transfer.py`'s cache), `{args.head}` head, "
        "regression objective; the head sees either every training photo or only those the "
        "product's quality gate passes (weight 0 for the others). Of the training split's "
        f"grade-4 photos that EyeQ labelled, {share:.0%} are 'Reject'; the gate passes "
        f"{kept4:.0%} of all training grade-4 photos. Threshold chosen on validation for 90 % "
        "sensitivity; mean ± SD over seeds. 'Referred' columns: share of the test split's "
        "grade 0-1 eyes referred, per EyeQ label (a model that does not use quality as a "
        "sign of disease refers about the same share of each).\n\n"
    )
    RESULTS.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
