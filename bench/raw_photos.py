"""Does the model grade raw camera photos as it grades the enhanced crops it was trained on?

Users upload raw photos (black borders, uneven exposure, colour casts, 2-5 MP); the training
photos are cropped and contrast-enhanced. This prints, for a model (default: the bundled one):

- DRIVE (40 raw photos of ``../shared/data/drive``; none referable): how many it calls
  referable, and the grades it gives;
- ``skimage.data.retina`` (a healthy eye) at 3 sizes: grade and referable probability;
- the EyePACS-256 test split (patient-grouped split of the model's run, never trained on) as
  given and made raw-looking (the enhancement undone: contrast lowered towards the orange of a
  raw fundus, a colour cast, vignetting, the field placed in a black 1,600 px frame, JPEG 85):
  QWK, referable AUC, sensitivity and specificity on both, side by side;
- srahim-dr (596 raw photos of both eyes from another clinic and camera, graded by
  ophthalmologists; never trained on): the same figures with 95 % patient-bootstrap intervals;
- quality vs grade: on the test split's photos that EyeQ graders labelled, the referral rate
  of the non-referable eyes (truth grade 0-1) by quality label: a model that learned "poor
  photo, severe DR" (58 % of the grade-4 training photos are EyeQ "Reject") refers the
  Reject photos of healthy eyes far more often than the Good ones.

Sensitivity and specificity are at the model card's own referable threshold throughout.

    .venv/bin/python bench/raw_photos.py [MODEL] [--every 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers import photo_sets as sets  # noqa: E402

from retinascreen.synthetic.camera import raw_looking  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


FIGURES: dict[str, dict] = {}


def _figures(
    y: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    rule: str,
    *,
    name: str,
    groups: list[str] | None = None,
) -> str:
    from retinascreen.models.metrics import bootstrap_intervals, compute_metrics

    m = compute_metrics(y, probabilities, referable_threshold=threshold, grade_rule=rule)
    ref = m["referable"]
    row = {
        "n": m["n"],
        "qwk": m["qwk"],
        "auc": ref["auc"],
        "sensitivity": ref["sensitivity"],
        "specificity": ref["specificity"],
    }
    text = {k: f"{v:.3f}" for k, v in row.items() if k != "n"}
    if groups is not None:
        intervals = bootstrap_intervals(
            y, probabilities, threshold=threshold, groups=groups, grade_rule=rule
        )
        row["intervals"] = intervals
        for key, (low, high) in intervals.items():
            text[key] += f" [{low:.3f}, {high:.3f}]"
    FIGURES[name] = row
    return (
        f"QWK {text['qwk']}  AUC {text['auc']}  sensitivity {text['sensitivity']}  "
        f"specificity {text['specificity']}  (n={m['n']})"
    )


def _external(predictor, threshold: float) -> None:  # noqa: ANN001
    from retinascreen.data.datasets import load_dataset

    folder = SHARED / "srahim-dr"
    if not folder.is_dir():
        print("srahim-dr: not found, skipped")
        return
    records = load_dataset(folder, "folders")
    results = predictor.predict_batch([r.path for r in records])
    y = np.array([r.grade for r in records])
    p = np.array([res.probabilities for res in results])
    groups = [r.patient for r in records]  # PatientNNN_L / _R: one patient
    figures = _figures(y, p, threshold, predictor.grade_rule, name="srahim-dr", groups=groups)
    print(f"\nsrahim-dr raw photos, another clinic: {figures}")
    ungradable = sum(not res.gradable for res in results)
    print(f"srahim-dr photos judged ungradable: {ungradable}/{len(results)}")


def _quality_vs_grade(test: list, p_enhanced: np.ndarray, threshold: float) -> None:
    if not sets.EYEQ_LABELS.is_file():
        return
    from retinascreen.models.metrics import referable_scores

    quality = sets.eyeq_quality()
    referable = referable_scores(p_enhanced) >= threshold
    expected = p_enhanced @ np.arange(5)
    print("\nquality vs grade on the test split (EyeQ-labelled photos):")
    rows = {}
    for band, lo, hi in (("truth grade 0-1", 0, 1), ("truth grade 2-4", 2, 4)):
        for label in ("Good", "Usable", "Reject"):
            idx = [
                i
                for i, r in enumerate(test)
                if quality.get(Path(r.path).stem) == label and lo <= r.grade <= hi
            ]
            if not idx:
                continue
            rate = float(referable[idx].mean())
            mean_grade = float(expected[idx].mean())
            rows[f"{band} {label}"] = {"n": len(idx), "referred": rate, "mean": mean_grade}
            print(
                f"  {band:16} {label:7} n={len(idx):3}  referred {rate:6.1%}  "
                f"expected grade {mean_grade:.2f}"
            )
    FIGURES["quality_vs_grade"] = rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=None, help="model (default: bundled)")
    parser.add_argument("--every", type=int, default=1, help="use every n-th test photo")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)

    from retinascreen.data.datasets import load_dataset, split_dataset
    from retinascreen.data.images import load_image
    from retinascreen.serving.predictor import Predictor

    predictor = Predictor(args.model)
    threshold = float(
        (predictor.card.extra if predictor.card else {}).get("referable_threshold", 0.5)
    )
    print(f"model: {predictor.model_info.notice}")
    print(f"referable threshold {threshold:.3f} (from the model card)\n")

    drive = [rgb for _, rgb in sets.drive_photos()]
    results = predictor.predict_batch(drive)
    grades = np.bincount([r.grade for r in results], minlength=5)
    flagged = sum(r.referable_probability >= threshold for r in results)
    FIGURES["drive"] = {"n": len(results), "referred": flagged, "grades": grades.tolist()}
    print(
        f"DRIVE raw photos (none referable): {flagged}/{len(results)} called referable "
        f"({flagged / len(results):.1%}); grades 0-4: {grades.tolist()}"
    )
    retina = sets.skimage_retina()
    for side in (512, 1411, 2800):
        r = predictor.predict(sets.resize_long_side(retina, side))
        print(
            f"skimage retina at {side} px: grade {r.grade}, referable probability "
            f"{r.referable_probability:.2f}, gradable {r.gradable}"
        )

    records = load_dataset(SHARED / "eyepacs-256", "eyepacs")
    config = predictor.card.extra.get("config", {}) if predictor.card else {}
    split_seed = config.get("split_seed")
    seed = config.get("seed", 0) if split_seed is None else split_seed
    test = split_dataset(
        records, val=config.get("val", 0.15), test=config.get("test", 0.15), seed=seed
    )["test"][:: args.every]
    y = np.array([r.grade for r in test])
    enhanced = [load_image(r.path) for r in test]
    p_enhanced = np.array([p.probabilities for p in predictor.predict_batch(enhanced)])
    raw = [raw_looking(image, i) for i, image in enumerate(enhanced)]
    raw_results = predictor.predict_batch(raw)
    p_raw = np.array([p.probabilities for p in raw_results])
    groups = [r.patient for r in test]
    rule = predictor.grade_rule
    given = _figures(y, p_enhanced, threshold, rule, name="eyepacs-test", groups=groups)
    print(f"\nEyePACS-256 test split as given:   {given}")
    raw_text = _figures(y, p_raw, threshold, rule, name="eyepacs-test-raw-looking", groups=groups)
    print(f"the same photos made raw-looking:  {raw_text}")
    gradable = np.mean([r.gradable for r in raw_results])
    print(f"raw-looking photos judged gradable: {gradable:.1%}")
    _quality_vs_grade(test, p_enhanced, threshold)
    _external(predictor, threshold)
    if args.json:
        import json

        FIGURES["model"] = predictor.model_info.to_dict()
        FIGURES["threshold"] = threshold
        Path(args.json).write_text(json.dumps(FIGURES, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
