"""Two levers on the bundled model's referrals of healthy eyes on other cameras (issue 21).

The card's threshold (sensitivity >= 0.9 on the validation photos as given and made
raw-looking) refers most of srahim-dr's healthy eyes. This measures, without training a new
grading network:

1. **Another target sensitivity.** For each target, the threshold is chosen exactly as
   ``tools/make_demo_model.py`` chooses the card's (validation photos as given and raw-looking,
   the latter with the same seeds); printed: sensitivity / specificity on the test split as
   given and raw-looking, on srahim-dr (another clinic and camera), and DRIVE's healthy eyes
   referred. Nothing here is chosen on srahim-dr or the test split.
2. **Lesion maps as extra evidence** (``--lesions``): per photo, from the bundled IDRiD lesion
   segmenter (1024 px), each class's area at its card threshold and at 0.8, its peak
   probability, its number of marked spots and its mean probability; a logistic regression on
   the validation photos (5-fold out-of-fold AUC there) from the grading model's referable
   logit and expected grade, the lesion features, or both; AUC on the test split and srahim-dr.

    nice -n 15 env PYTHONPATH=src python bench/referral_levers.py [--lesions]

Writes ``bench/results/referral-levers.md``. Needs ``../shared/data``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers import photo_sets as sets  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "results" / "referral-levers.md"
TARGETS = (0.9, 0.875, 0.85, 0.825, 0.8)


def _operating(y: np.ndarray, scores: np.ndarray, threshold: float) -> str:
    from retinascreen.models.metrics import referable_operating_point

    point = referable_operating_point(y, scores, threshold)
    return f"{point['sensitivity']:.3f} / {point['specificity']:.3f}"


def _lesion_features(segmenter: Any, image: Any) -> list[float]:
    import cv2

    seg = segmenter.segment(image)
    pixels = max(1, int(seg.field.sum()))
    row: list[float] = []
    for name, prob in seg.maps.items():
        inside = prob * seg.field
        mask = inside >= seg.thresholds[name]
        spots = cv2.connectedComponents(mask.astype(np.uint8))[0] - 1
        row += [
            np.log1p(1e4 * mask.sum() / pixels),
            np.log1p(1e4 * (inside >= 0.8).sum() / pixels),
            float(inside.max()),
            np.log1p(spots),
            np.log1p(1e4 * float(inside.sum()) / pixels),
        ]
    return row


def _grade_features(p: np.ndarray) -> np.ndarray:
    from retinascreen.models.metrics import referable_scores

    referable = np.clip(referable_scores(p), 1e-4, 1 - 1e-4)
    return np.c_[np.log(referable / (1 - referable)), p @ np.arange(5)]


def lesion_table(sets_: dict[str, tuple[np.ndarray, np.ndarray, list]]) -> list[str]:
    """Logistic regressions on the validation photos; AUC out of fold there, then on the others."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from retinascreen.serving.segmenter import Segmenter

    segmenter = Segmenter(None, "lesions", threads=2)
    lesions = {
        name: np.array([_lesion_features(segmenter, image) for image in images])
        for name, (_, _, images) in sets_.items()
    }
    lines = [
        "| evidence | validation AUC (5-fold, out of fold) | test AUC | srahim-dr AUC |",
        "|---|---|---|---|",
    ]
    for label, parts in (
        ("grading model only", ("g",)),
        ("lesion maps only", ("l",)),
        ("both", ("g", "l")),
    ):

        def design(name: str, parts: tuple[str, ...] = parts) -> np.ndarray:
            columns = []
            if "g" in parts:
                columns.append(_grade_features(sets_[name][1]))
            if "l" in parts:
                columns.append(lesions[name])
            return np.hstack(columns)

        y_val = sets_["val"][0] >= 2
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.03, max_iter=2000))
        oof = cross_val_predict(model, design("val"), y_val, cv=5, method="predict_proba")[:, 1]
        model.fit(design("val"), y_val)
        aucs = [
            roc_auc_score(sets_[name][0] >= 2, model.predict_proba(design(name))[:, 1])
            for name in ("test", "srahim")
        ]
        lines.append(
            f"| {label} | {roc_auc_score(y_val, oof):.3f} | {aucs[0]:.3f} | {aucs[1]:.3f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesions", action="store_true", help="also the lesion-map evidence")
    args = parser.parse_args(argv)
    if not (SHARED / "eyepacs-256").is_dir():
        print(f"error: {SHARED} not found: the real photographs live in ../shared/data")
        return 2

    from retinascreen.data.datasets import load_dataset, split_dataset
    from retinascreen.data.images import load_image
    from retinascreen.models.metrics import referable_scores, threshold_for_sensitivity
    from retinascreen.serving.predictor import Predictor
    from retinascreen.synthetic.camera import raw_looking

    predictor = Predictor(None)
    card = predictor.card
    assert card is not None
    config = card.extra["config"]
    split = split_dataset(
        load_dataset(SHARED / "eyepacs-256", "eyepacs"),
        val=config["val"],
        test=config["test"],
        seed=config["split_seed"],
    )

    def probabilities(images: list) -> np.ndarray:
        return np.array([r.probabilities for r in predictor.predict_batch(images)])

    photos: dict[str, tuple[np.ndarray, np.ndarray, list]] = {}
    raw: dict[str, np.ndarray] = {}
    for part, first_seed in (("val", 10_000), ("test", 0)):  # the seeds of the card / bench
        images = [load_image(r.path) for r in split[part]]
        y = np.array([r.grade for r in split[part]])
        photos[part] = (y, probabilities(images), images)
        raw[part] = probabilities([raw_looking(im, first_seed + i) for i, im in enumerate(images)])
        print(f"{part}: {len(images)} photos", flush=True)
    srahim = load_dataset(SHARED / "srahim-dr", "folders")
    srahim_images = [load_image(r.path) for r in srahim]
    photos["srahim"] = (
        np.array([r.grade for r in srahim]),
        probabilities(srahim_images),
        srahim_images,
    )
    drive = referable_scores(probabilities([rgb for _, rgb in sets.drive_photos()]))

    y_val = np.concatenate([photos["val"][0]] * 2)
    val_scores = referable_scores(np.concatenate([photos["val"][1], raw["val"]]))
    y_test = photos["test"][0]
    lines = [
        "# Referral levers without a new grading network",
        "",
        f"Measured by `nice -n 15 env PYTHONPATH=src python bench/referral_levers.py"
        f"{' --lesions' if args.lesions else ''}` on the bundled model ({card.name}, sha256 "
        f"{predictor.model_info.sha256[:12]}); EyePACS-256 split of its card (validation "
        f"{len(photos['val'][0])}, test {len(y_test)} photos), srahim-dr {len(srahim)} raw "
        "photos (another clinic; never trained or tuned on), DRIVE 40 healthy-eye photos.",
        "",
        "## 1. Target sensitivity of the card's threshold",
        "",
        "Sensitivity / specificity at the threshold chosen on the validation photos as given "
        "and raw-looking (the card's rule; the card uses 0.9).",
        "",
        "| target | threshold | test as given | test raw-looking | srahim-dr | DRIVE referred |",
        "|---|---|---|---|---|---|",
    ]
    for target in TARGETS:
        t = threshold_for_sensitivity(y_val, val_scores, target)
        lines.append(
            f"| {target:g} | {t:.3f} "
            f"| {_operating(y_test, referable_scores(photos['test'][1]), t)} "
            f"| {_operating(y_test, referable_scores(raw['test']), t)} "
            f"| {_operating(photos['srahim'][0], referable_scores(photos['srahim'][1]), t)} "
            f"| {int(np.sum(drive >= t))} of {len(drive)} |"
        )
    if args.lesions:
        lines += ["", "## 2. Lesion maps as extra evidence", "", *lesion_table(photos)]
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
