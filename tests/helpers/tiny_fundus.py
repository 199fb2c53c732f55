"""A tiny hand-made graded fundus data set (APTOS layout) for training tests."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np


def make_tiny_aptos(out: Path, n: int = 30, size: int = 96, seed: int = 0) -> Path:
    """``n`` photos: an orange disc on black with more dark spots for higher grades."""
    out = Path(out)
    (out / "train_images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    centre = size // 2
    for i in range(n):
        grade = i % 5
        image = np.zeros((size, size, 3), np.uint8)
        cv2.circle(image, (centre, centre), int(size * 0.45), (200, 90, 40), -1)
        cv2.circle(image, (centre + size // 6, centre), size // 12, (250, 220, 150), -1)
        for _ in range(grade * 4):
            x, y = rng.integers(centre - size // 4, centre + size // 4, 2)
            cv2.circle(image, (int(x), int(y)), 2, (90, 10, 10), -1)
        name = f"img{i:03d}"
        cv2.imwrite(str(out / "train_images" / f"{name}.png"), image[:, :, ::-1])
        rows.append((name, grade))
    with open(out / "train.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_code", "diagnosis"])
        writer.writerows(rows)
    return out
