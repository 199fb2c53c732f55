"""Raw-camera versions of the training photos, so a model learns the camera is not the disease.

The EyePACS-256 training photos were cropped and contrast-enhanced by a third party; clinics
upload raw camera frames. A model trained on the enhanced look alone shifts its referable
probabilities upward on raw photos (measured: specificity 0.40 on raw-looking test photos and
0.37 on srahim-dr at the threshold chosen on validation). :func:`cache_camera_variants` makes
``n`` raw-looking frames per photo (``synthetic.camera.raw_looking``: another colour, contrast,
vignetting, framing and JPEG), puts each through the run's own pre-processing exactly as a
clinic's photo would be, and caches the crops beside the plain ones; the training set then shows
each photo as one of its versions (see ``data.pipeline.make_dataset``'s ``alternatives``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from retinascreen.data.datasets import Record
from retinascreen.data.fundus import Preprocessing
from retinascreen.data.pipeline import cache_key, settings_folder, write_crop_png
from retinascreen.synthetic.camera import raw_looking


def variant_seed(record_key: str, index: int) -> int:
    """A stable seed per photo and version (the same frames in every run with this cache)."""
    return int.from_bytes(hashlib.sha256(f"{record_key}|{index}".encode()).digest()[:4], "little")


def _write_variant(source: Path, target: Path, seed: int, preprocessing: Preprocessing) -> None:
    from retinascreen.data.images import load_image

    write_crop_png(preprocessing.apply(raw_looking(load_image(source), seed)), target)


def cache_camera_variants(
    records: Sequence[Record],
    preprocessing: Preprocessing,
    n: int,
    cache_dir: str | Path | None = None,
    *,
    workers: int | None = None,
) -> list[list[Path]]:
    """``n`` cached pre-processed raw-camera crops per record, in the records' order."""
    folder = settings_folder(cache_dir, preprocessing) / "camera"
    folder.mkdir(parents=True, exist_ok=True)
    out: list[list[Path]] = []
    todo: list[tuple[Path, Path, int]] = []
    for record in records:
        key = cache_key(record.path, preprocessing)
        paths = []
        for i in range(n):
            target = folder / f"{key}-{i}.png"
            paths.append(target)
            if not target.exists():
                todo.append((Path(record.path), target, variant_seed(key, i)))
        out.append(paths)
    if todo:
        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            list(pool.map(lambda job: _write_variant(job[0], job[1], job[2], preprocessing), todo))
    return out


__all__ = ["cache_camera_variants", "variant_seed"]
