"""IDRiD test-split figures of a segmentation model (shared by tools/make_idrid_models.py and
bench/idrid_segmentation.py): per class, the area under the precision-recall curve (the IDRiD
challenge metric; sklearn's average precision, pooled over all test pixels inside the field of
view of the model's fundus crop) and Dice at the card's threshold; for the disc also the mean
per-photo Dice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

IDRID = Path(__file__).resolve().parents[2] / "shared" / "data" / "idrid-segmentation"


def test_metrics(
    model: Any,
    size: int,
    classes: tuple[str, ...] | list[str],
    clahe: bool,
    thresholds: list[float],
    root: Path = IDRID,
    ignore_rim: float = 0.0,
    flip_average: bool = False,
) -> dict[str, Any]:
    """AUPR and Dice per class on the 27 IDRiD test photos (pooled), per-photo disc Dice.

    ``ignore_rim``: the model's scores are 0 on that outer share of the field's radius, as the
    Segmenter draws them (the masks' lesions there still count, as misses); ``flip_average``:
    the maps averaged with the mirrored photo's, as the Segmenter serves a card saying so."""
    from sklearn.metrics import average_precision_score

    from retinascreen.data.idrid_masks import crop_photo, read_idrid_masks
    from retinascreen.data.rim import field_rim
    from retinascreen.training.segmentation import predict_maps

    scores: list[list[np.ndarray]] = [[] for _ in classes]
    truths: list[list[np.ndarray]] = [[] for _ in classes]
    per_photo: list[list[float]] = [[] for _ in classes]
    photos = read_idrid_masks(root, "test")
    for photo in photos:
        view, target, field = crop_photo(photo, size, list(classes), clahe=clahe)
        out = predict_maps(model, view[None], batch=1, flip_average=flip_average)[0]
        if ignore_rim:
            out = out * ~field_rim(field, ignore_rim)[:, :, None]
        for c in range(len(classes)):
            s, t = out[..., c][field], target[..., c][field]
            scores[c].append(s.astype(np.float16))
            truths[c].append(t)
            pred = s >= thresholds[c]
            denom = np.count_nonzero(pred) + np.count_nonzero(t)
            if np.count_nonzero(t):
                per_photo[c].append(2 * np.count_nonzero(pred & t) / denom)
    result: dict[str, Any] = {"test_photos": len(photos), "test_aupr": {}, "test_dice": {}}
    for c, name in enumerate(classes):
        s = np.concatenate(scores[c]).astype(np.float32)
        t = np.concatenate(truths[c])
        pred = s >= thresholds[c]
        denom = np.count_nonzero(pred) + np.count_nonzero(t)
        result["test_aupr"][name] = round(float(average_precision_score(t, s)), 4)
        result["test_dice"][name] = round(2 * np.count_nonzero(pred & t) / max(1, denom), 4)
        result.setdefault("test_dice_mean_per_photo", {})[name] = round(
            float(np.mean(per_photo[c])) if per_photo[c] else float("nan"), 4
        )
        result.setdefault("test_photos_with", {})[name] = len(per_photo[c])
    result["evaluation"] = (
        f"IDRiD test split ({len(photos)} photos), pixels inside the field of view of the "
        f"{size} px fundus crop, masks cut by the same square"
        + (f"; scores 0 on the outer {ignore_rim:.0%} of the field's radius" if ignore_rim else "")
        + ("; maps averaged with the mirrored photo's" if flip_average else "")
    )
    return result
