"""Per-photo cache of the disc and lesion maps for ``bench/anatomy.py`` (not part of the package).

The models are the slow part of the anatomy bench (the lesion model runs at 1024 px); their maps
are stored once per photo under ``runs/anatomy/cache/<disc sha256[:12]>-<lesion sha256[:12]>/``
so that another laterality or maculopathy rule is re-scored in seconds. The key holds both
models' sha256: a newly bundled lesion (or disc) model gets a fresh cache by itself.

Each ``<set>/<name>.npz``: ``disc`` (S, S) uint8 probability x 255, ``view`` (S, S, 3) the disc
model's crop, ``field`` its field of view, ``lesions`` (L, 1024, 1024) uint8 probability x 255
(below 1 % stored as 0, so the file compresses), ``lesion_field``, ``box`` (cx, cy, half) and
``shape`` (the photo's height, width).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from retinascreen.data.crop import CropBox

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "anatomy" / "cache"


@dataclass(frozen=True)
class Cached:
    """The maps of one photo, read back from the cache."""

    disc: np.ndarray  # float32 (S, S)
    view: np.ndarray
    field: np.ndarray
    lesions: dict[str, np.ndarray]  # float32 (1024, 1024) per class
    lesion_field: np.ndarray
    box: CropBox
    shape: tuple[int, int]


class MapCache:
    """Draws (once) and reads the disc and lesion maps of photos; ``threads``: per model."""

    def __init__(self, threads: int | None = 1, *, lesion_model: str | None = None) -> None:
        from retinascreen.serving.segmenter import Segmenter

        self.disc = Segmenter(None, "disc", threads=threads)
        self.lesions = Segmenter(lesion_model, "lesions", threads=threads)
        key = f"{self.disc.model_info.sha256[:12]}-{self.lesions.model_info.sha256[:12]}"
        self.folder = CACHE / key
        self.classes = self.lesions.classes
        self.disc_threshold = self.disc.thresholds["optic_disc"]
        self.lesion_thresholds = dict(self.lesions.thresholds)

    def path(self, group: str, name: str) -> Path:
        return self.folder / group / f"{name}.npz"

    def get(self, group: str, name: str, image: Path) -> Cached:
        """The cached maps of ``image`` (drawn and stored first when missing)."""
        path = self.path(group, name)
        if not path.is_file():
            self._draw(image, path)
        with np.load(path) as data:
            cx, cy, half = (float(v) for v in data["box"])
            return Cached(
                disc=data["disc"].astype(np.float32) / 255.0,
                view=data["view"],
                field=data["field"],
                lesions={
                    n: data["lesions"][i].astype(np.float32) / 255.0
                    for i, n in enumerate(self.classes)
                },
                lesion_field=data["lesion_field"],
                box=CropBox(cx, cy, half),
                shape=(int(data["shape"][0]), int(data["shape"][1])),
            )

    def _draw(self, image: Path, path: Path) -> None:
        from retinascreen.data.photo import FundusPhoto

        photo = FundusPhoto.read(image)
        disc = self.disc.segment(photo)
        lesions = self.lesions.segment(photo)
        maps = np.stack([lesions.maps[n] for n in self.classes])
        maps = np.where(maps < 0.01, 0.0, maps)
        box = photo.box
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            disc=np.round(disc.maps["optic_disc"] * 255).astype(np.uint8),
            view=disc.view,
            field=disc.field,
            lesions=np.round(maps * 255).astype(np.uint8),
            lesion_field=lesions.field,
            box=np.array([box.cx, box.cy, box.half], np.float64),
            shape=np.array(photo.shape[:2]),
        )
        tmp.replace(path)

    def fill(self, items: list[tuple[str, str, Path]]) -> None:
        """Draw the maps of every (group, name, image) not cached yet, with progress."""
        todo = [item for item in items if not self.path(item[0], item[1]).is_file()]
        start = time.monotonic()
        for i, (group, name, image) in enumerate(todo):
            self._draw(image, self.path(group, name))
            if i % 25 == 0 or i == len(todo) - 1:
                print(f"maps {i + 1}/{len(todo)} {time.monotonic() - start:.0f}s", flush=True)
