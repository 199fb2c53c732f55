"""Segmentation figures: ``PYTHONPATH=src python bench/segmentation.py``.

1. Vessels on DRIVE's 20 test photos, inside the field-of-view mask, against the 1st observer:
   pixel AUC, F1 (= Dice), sensitivity, specificity, accuracy, pooled over all field pixels
   (AUC and F1 also as the mean over photos), for the bundled model and each compared model
   (``--compare``), with the 2nd observer against the 1st as the human reference.
2. Lesions: per-lesion Dice of the bundled lesion model on unseen synthetic photos.
3. Lesion area the lesion model predicts on DRIVE's 40 real photos (the data set has 33
   without DR and 7 with mild early DR, but does not say which, so all 40 are reported).

Everything is measured in the model's own fundus crop (``input_size`` of its card), masks cut
by the same square as the photo. Writes ``bench/results/segmentation.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT.parent / "shared" / "data" / "drive"
RESULTS = ROOT / "bench" / "results" / "segmentation.md"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _load(path: Path):  # noqa: ANN202
    import keras

    from retinascreen.models.modelcard import read_card

    return keras.models.load_model(path, compile=False), read_card(path)


def vessel_rows(paths: list[Path]) -> list[str]:
    from retinascreen.data.drive import read_drive
    from retinascreen.training.segmentation import drive_data, pixel_metrics, predict_maps

    photos = read_drive(DRIVE, "test")
    rows = []
    cache: dict[tuple[int, bool], object] = {}
    for path in paths:
        model, card = _load(path)
        key = (card.input_size, bool(card.preprocessing.get("clahe")))
        if key not in cache:
            cache[key] = drive_data(photos, key[0], clahe=key[1])
        test = cache[key]
        start = time.perf_counter()
        maps = predict_maps(model, test.views)[..., 0]
        seconds = (time.perf_counter() - start) / len(maps)
        t = card.thresholds[0]
        pooled = pixel_metrics(maps, test.targets[..., 0], test.fields, t)
        per = [
            pixel_metrics(maps[i], test.targets[i, ..., 0], test.fields[i], t)
            for i in range(len(maps))
        ]
        mean_auc = float(np.mean([p["auc"] for p in per]))
        mean_f1 = float(np.mean([p["f1"] for p in per]))
        budget = card.metrics.get("training_seconds", "?")
        clahe = ", CLAHE" if key[1] else ""
        steps = 100 * int(card.metrics.get("epochs", 0))
        label = f"{path.name} ({card.backbone}{clahe}, {budget} s, {steps} steps)"
        rows.append(
            f"| {label} | {_fmt(pooled['auc'])} | {_fmt(mean_auc)} | {_fmt(pooled['f1'])} | "
            f"{_fmt(mean_f1)} | {_fmt(pooled['sensitivity'])} | {_fmt(pooled['specificity'])} | "
            f"{_fmt(pooled['accuracy'])} | {t:.3f} | {seconds:.2f} |"
        )
        print(rows[-1], flush=True)
    second = drive_data(photos, card.input_size, second=True)
    first = drive_data(photos, card.input_size)
    human = pixel_metrics(
        second.targets[..., 0].astype(float), first.targets[..., 0], first.fields, None
    )
    per_h = [
        pixel_metrics(
            second.targets[i, ..., 0].astype(float), first.targets[i, ..., 0], first.fields[i], None
        )
        for i in range(len(second.views))
    ]
    rows.append(
        f"| 2nd observer vs 1st (human reference) | - | - | {_fmt(human['f1'])} | "
        f"{_fmt(float(np.mean([p['f1'] for p in per_h])))} | {_fmt(human['sensitivity'])} | "
        f"{_fmt(human['specificity'])} | {_fmt(human['accuracy'])} | - | - |"
    )
    print(rows[-1], flush=True)
    return rows


def lesion_rows(path: Path, n_test: int) -> tuple[list[str], list[str]]:
    from retinascreen.data.drive import crop_with_masks, read_drive
    from retinascreen.training.segmentation import mean_dice, predict_maps, synthetic_data

    model, card = _load(path)
    classes = card.classes
    test = synthetic_data(range(200_000, 200_000 + n_test), card.input_size, classes)
    maps = predict_maps(model, test.views)
    dice = mean_dice(maps, test, card.thresholds)
    table = []
    for c, name in enumerate(classes):
        truth = test.targets[..., c]
        photos = int(truth.reshape(len(truth), -1).any(1).sum())
        share = truth[test.fields].mean()
        pred = (maps[..., c] >= card.thresholds[c])[test.fields].mean()
        d = _fmt(dice[c]) if photos else "- (absent)"
        table.append(
            f"| {name} | {photos}/{n_test} | {100 * share:.3f} % | {100 * pred:.3f} % | {d} |"
        )
    photos = read_drive(DRIVE, "training") + read_drive(DRIVE, "test")
    views, fields = [], []
    for photo in photos:
        view, cut = crop_with_masks(photo.image, {"f": photo.field}, card.input_size)
        views.append(view)
        fields.append(cut["f"])
    real = predict_maps(model, np.stack(views))
    field = np.stack(fields)
    area = []
    for c, name in enumerate(classes):
        binary = real[..., c] >= card.thresholds[c]
        share = [binary[i][field[i]].mean() for i in range(len(photos))]
        with_any = sum(binary[i][field[i]].sum() >= 20 for i in range(len(photos)))
        area.append(
            f"| {name} | {100 * np.mean(share):.3f} % | {100 * np.max(share):.3f} % | "
            f"{with_any}/{len(photos)} |"
        )
    return table, area


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vessels", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--lesions", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--compare", type=Path, nargs="*", default=[], help="more vessel models")
    parser.add_argument("--n-synthetic", type=int, default=60)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from retinascreen.models.segmentation import bundled_segmenter

    vessels = args.vessels or bundled_segmenter("vessels")
    lesions = args.lesions or bundled_segmenter("lesions")
    head = (
        "| model | AUC | AUC (mean/photo) | F1/Dice | F1 (mean/photo) | sensitivity | "
        "specificity | accuracy | threshold | s/photo |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    rows = vessel_rows([vessels, *args.compare])
    table, area = lesion_rows(lesions, args.n_synthetic)
    command = "PYTHONPATH=src python bench/segmentation.py " + " ".join(argv or sys.argv[1:])
    text = "\n".join(
        [
            "# Segmentation",
            "",
            f"Measured by `{command.strip()}` (2 shared CPU cores).",
            "",
            "## Vessels: DRIVE test set (20 photos), inside the FOV mask, vs the 1st observer",
            "",
            "Pixels of the model's fundus crop (the DRIVE field, ~540 px, at about its native "
            "scale); pooled over all field pixels unless 'mean/photo'. Thresholds are the "
            "model card's (chosen on 3 held-out training photos).",
            "",
            head,
            *rows,
            "",
            f"## Lesions: per-lesion Dice on {args.n_synthetic} unseen synthetic photos",
            "",
            "Synthetic photos only - no real lesion masks exist for training or testing.",
            "",
            "| lesion | photos with it | true area (of field) | predicted area | Dice |",
            "|---|---|---|---|---|",
            *table,
            "",
            "## Lesion area predicted on DRIVE's 40 real photos",
            "",
            "DRIVE has 33 photos without DR and 7 with mild early DR but does not say which, "
            "so this is over all 40: ideally near zero everywhere (false alarms on real photos "
            "of a model that has only seen synthetic lesions).",
            "",
            "| lesion | mean area (of field) | max area | photos with >= 20 px |",
            "|---|---|---|---|",
            *area,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
