"""Lesion and optic-disc figures of the IDRiD-trained segmenters.

    nice -n 15 env PYTHONPATH=src python bench/idrid_segmentation.py [--lesions FILE] [--disc FILE]

1. Lesions on IDRiD's 27 test photos: area under the precision-recall curve per lesion (the
   IDRiD challenge metric; pooled over all test pixels inside the field of view of the model's
   fundus crop, masks cut by the same square), beside the challenge's published best, and
   Dice at the card's threshold;
2. optic disc on the same photos: Dice (pooled and mean per photo);
3. what the lesion model marks on DRIVE's 40 photos (33 without DR, 7 mild, unlabelled):
   hard- and soft-exudate area as a share of the field, and on how many photos it stays
   under 0.05 %.

Defaults are the bundled ``lesions`` and ``disc`` models. Writes
``bench/results/idrid-segmentation.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
DRIVE = ROOT.parent / "shared" / "data" / "drive"
RESULTS = ROOT / "bench" / "results" / "idrid-segmentation"
CHALLENGE_BEST = {"microaneurysm": 0.5017, "haemorrhage": 0.6804, "hard_exudate": 0.8850,
                  "cotton_wool": 0.6890}  # fmt: skip
TARGET = {"microaneurysm": 0.35, "haemorrhage": 0.55, "hard_exudate": 0.75, "cotton_wool": 0.55}
IDRID_NAMES = {
    "microaneurysm": "MA",
    "haemorrhage": "HE",
    "hard_exudate": "EX",
    "cotton_wool": "SE",
}


def _load(path: Path):  # noqa: ANN202
    import keras

    from retinascreen.models.modelcard import read_card

    return keras.models.load_model(path, compile=False), read_card(path)


def drive_areas(path: Path, threads: int = 2) -> tuple[dict[str, list[float]], list[str], float]:
    """Share of the field each lesion mask covers on DRIVE's 40 photos (Segmenter as served,
    the ONNX twin when there is one), the photos' names and the mean seconds per photo."""
    from retinascreen.data.drive import read_drive
    from retinascreen.serving.segmenter import Segmenter

    twin = path.with_suffix(".onnx")
    segmenter = Segmenter(twin if twin.is_file() else path, threads=threads)
    areas: dict[str, list[float]] = {name: [] for name in segmenter.classes}
    names: list[str] = []
    seconds = 0.0
    for split in ("training", "test"):
        for photo in read_drive(DRIVE, split):
            start = time.perf_counter()
            result = segmenter.segment(photo.image)
            seconds += time.perf_counter() - start
            names.append(photo.name)
            for name, value in result.areas().items():
                areas[name].append(value)
    return areas, names, seconds / max(1, len(names))


def drive_report(path: Path, threads: int) -> tuple[dict, list[str]]:
    """DRIVE's section of the report: areas per lesion, per photo, and the clean count."""
    areas, names, seconds = drive_areas(path, threads)
    ex = np.asarray(areas.get("hard_exudate", [0.0] * len(names)))
    se = np.asarray(areas.get("cotton_wool", [0.0] * len(names)))
    clean = int(np.count_nonzero((ex < 0.0005) & (se < 0.0005)))
    report = {"drive_areas": areas, "drive_photos": names, "drive_clean_photos": clean,
              "seconds_per_photo": round(seconds, 3), "threads": threads}  # fmt: skip
    lines = [
        "", f"## What the lesion model marks on DRIVE's {len(names)} photos", "",
        "DRIVE has 33 photos without DR and 7 with mild early DR but does not say which. Area = "
        "share of the field of view the lesion mask covers, the photo run through `Segmenter` "
        f"as served ({path.with_suffix('.onnx').name if path.with_suffix('.onnx').is_file() else path.name}, "
        f"{threads} threads: {seconds:.2f} s per photo including decoding and cropping).", "",
        "| lesion | mean area | max area | photos under 0.05 % |", "|---|---|---|---|",
    ]  # fmt: skip
    for name, values in areas.items():
        v = np.asarray(values)
        lines.append(
            f"| {name} | {100 * v.mean():.3f} % | {100 * v.max():.3f} % | "
            f"{int(np.count_nonzero(v < 0.0005))}/{len(v)} |"
        )
    lines += ["", f"Hard and soft exudate area both under 0.05 % of the field: **{clean}/"
              f"{len(names)}** photos (target >= 33).", "",
              "| photo | hard exudate | soft exudate | both under 0.05 % |", "|---|---|---|---|"]  # fmt: skip
    for name, e, c in zip(names, ex, se, strict=True):
        ok = "yes" if e < 0.0005 and c < 0.0005 else "no"
        lines.append(f"| {name} | {100 * e:.3f} % | {100 * c:.3f} % | {ok} |")
    return report, lines


def main(argv: list[str] | None = None) -> int:
    from idrid_eval import test_metrics

    from retinascreen.models.engines import bundled_segmenter

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lesions", type=Path, default=bundled_segmenter("lesions"))
    parser.add_argument("--disc", type=Path, default=bundled_segmenter("disc"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads on DRIVE")
    parser.add_argument(
        "--drive-only", action="store_true", help="only DRIVE's areas (printed, nothing written)"
    )
    args = parser.parse_args(argv)
    if args.drive_only:
        print("\n".join(drive_report(args.lesions, args.threads)[1]))
        return 0
    report: dict = {}
    lines = ["# IDRiD segmentation: lesions and optic disc", ""]
    command = "nice -n 15 env PYTHONPATH=src python bench/idrid_segmentation.py"
    lines += [f"Measured by `{command}` (models: `{args.lesions.name}`, `{args.disc.name}`).", ""]

    model, card = _load(args.lesions)
    classes = list(card.classes)
    clahe = bool(card.preprocessing.get("clahe"))
    rim = float(card.extra.get("ignore_rim", 0.0) or 0.0)
    lesions = test_metrics(
        model,
        card.input_size,
        classes,
        clahe,
        list(card.thresholds or []),
        ignore_rim=rim,
        flip_average=bool(card.extra.get("flip_average")),
    )
    report["lesions"] = lesions | {"card_training_seconds": card.metrics.get("training_seconds")}
    lines += [
        f"## Lesions: IDRiD test split ({lesions['test_photos']} photos)", "",
        f"{card.name}: U-Net"
        + (f" with an ImageNet-pretrained {card.backbone} encoder" if card.backbone != "unet" else "")
        + f" on the {card.input_size} px fundus crop"
        f"{' (CLAHE)' if clahe else ''}, trained on {card.training_data}. "
        f"{lesions['evaluation']}. AUPR = sklearn average precision over all pooled pixels; "
        "the challenge's figures were measured at full resolution by its organisers, ours in "
        "the model's crop, so they are a reference, not a like-for-like ranking.", "",
        "| lesion | photos with it | AUPR | target | challenge best | Dice at threshold "
        "| Dice mean/photo | threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for i, name in enumerate(classes):
        lines.append(
            f"| {name} ({IDRID_NAMES.get(name, '')}) | {lesions['test_photos_with'][name]} "
            f"| {lesions['test_aupr'][name]:.4f} | {TARGET.get(name, float('nan')):.2f} "
            f"| {CHALLENGE_BEST.get(name, float('nan')):.2f} | {lesions['test_dice'][name]:.4f} "
            f"| {lesions['test_dice_mean_per_photo'][name]:.4f} | {card.thresholds[i]:.3f} |"
        )

    model, dcard = _load(args.disc)
    disc = test_metrics(
        model, dcard.input_size, ["optic_disc"], bool(dcard.preprocessing.get("clahe")),
        list(dcard.thresholds or [0.5]),
    )  # fmt: skip
    report["disc"] = disc
    lines += [
        "", f"## Optic disc: IDRiD test split ({disc['test_photos']} photos)", "",
        f"{dcard.name}: U-Net on the {dcard.input_size} px fundus crop, trained on "
        f"{dcard.training_data}.", "",
        "| Dice (pooled) | Dice mean/photo | AUPR | target |", "|---|---|---|---|",
        f"| {disc['test_dice']['optic_disc']:.4f} | "
        f"{disc['test_dice_mean_per_photo']['optic_disc']:.4f} | "
        f"{disc['test_aupr']['optic_disc']:.4f} | 0.90 |",
    ]  # fmt: skip

    drive, drive_lines = drive_report(args.lesions, args.threads)
    report |= drive
    lines += drive_lines
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
