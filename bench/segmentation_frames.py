"""Vessel maps in the photo's own frame vs the model's crop: ``python bench/segmentation_frames.py``.

For each of DRIVE's 20 test photos, the bundled vessel model (as ``retinascreen segment`` runs
it, :class:`retinascreen.Segmenter`) draws its map once; it is scored against the 1st observer
(pooled over all field pixels, and the mean over photos)

- in the model's 576 px crop, the manual map and DRIVE's field mask cut by the same square
  (the README's figures), and
- in the photo's own 565 x 584 frame, the map put back with
  :meth:`~retinascreen.serving.segmenter.Segmentation.in_photo_frame`, inside DRIVE's mask:
  what a user who lays ``<stem>_vessels.png`` over the photo gets.

Writes ``bench/results/segmentation-frames.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DRIVE = ROOT.parent / "shared" / "data" / "drive"
RESULTS = ROOT / "bench" / "results" / "segmentation-frames.md"


def main() -> int:
    from retinascreen.data.drive import crop_with_masks, read_drive
    from retinascreen.serving.segmenter import Segmenter
    from retinascreen.training.segmentation import pixel_metrics

    segmenter = Segmenter()
    threshold = segmenter.thresholds["vessels"]
    frames: dict[str, dict[str, list]] = {
        "crop": {"maps": [], "truth": [], "field": []},
        "photo": {"maps": [], "truth": [], "field": []},
    }
    for photo in read_drive(DRIVE, "test"):
        result = segmenter.segment(photo.image)
        _, cut = crop_with_masks(
            photo.image, {"v": photo.vessels, "f": photo.field}, segmenter.input_size
        )
        in_photo = result.in_photo_frame()
        assert in_photo.maps["vessels"].shape == photo.vessels.shape
        for name, m, t, f in (
            ("crop", result.maps["vessels"], cut["v"], cut["f"]),
            ("photo", in_photo.maps["vessels"], photo.vessels, photo.field),
        ):
            frames[name]["maps"].append(m)
            frames[name]["truth"].append(t)
            frames[name]["field"].append(f)
    rows = []
    for name, data in frames.items():
        pooled = pixel_metrics(
            np.concatenate([m.ravel() for m in data["maps"]]),
            np.concatenate([t.ravel() for t in data["truth"]]),
            np.concatenate([f.ravel() for f in data["field"]]),
            threshold,
        )
        per = [
            pixel_metrics(m, t, f, threshold)
            for m, t, f in zip(data["maps"], data["truth"], data["field"], strict=True)
        ]
        size = "x".join(str(s) for s in data["maps"][0].shape[::-1])
        rows.append(
            f"| {name} ({size}) | {pooled['auc']:.4f} | "
            f"{np.mean([p['auc'] for p in per]):.4f} | {pooled['f1']:.4f} | "
            f"{np.mean([p['f1'] for p in per]):.4f} | {pooled['sensitivity']:.4f} | "
            f"{pooled['specificity']:.4f} |"
        )
    text = "\n".join(
        [
            "# Vessel maps: the model's crop and the photo's own frame",
            "",
            "Measured by `PYTHONPATH=src python bench/segmentation_frames.py` on DRIVE's 20 test "
            f"photos, bundled `{segmenter.model_path.name}` (threshold {threshold:.3f}), vs the "
            "1st observer inside the field (crop: DRIVE's mask cut by the crop's square; photo: "
            "DRIVE's mask).",
            "",
            "| frame (width x height) | AUC | AUC (mean/photo) | F1 | F1 (mean/photo) | "
            "sensitivity | specificity |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
