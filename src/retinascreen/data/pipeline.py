"""The training input pipeline: decode and crop each photo once, then stream crops with tf.data.

:func:`cache_crops` writes every record's fundus crop at the training size to a disk cache (PNG,
keyed by the source file's path, mtime and size and by the pre-processing settings, so changing
either never reuses a stale crop). :func:`make_dataset` reads the cached crops with tf.data,
shuffles and augments them (training only) and yields ``(float32 0..255 (B, S, S, 3), int32 (B,))``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm import tqdm

from retinascreen.data.datasets import Record
from retinascreen.errors import DatasetError, RetinascreenError

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

    from retinascreen.data.fundus import Preprocessing

log = logging.getLogger(__name__)

_SHOW = 5


class UnreadableImagesError(DatasetError):
    """Some photos of a data set could not be decoded or cropped; ``failures`` lists them."""

    def __init__(self, failures: list[tuple[Path, str]], total: int) -> None:
        self.failures = failures
        shown = "; ".join(f"{p.name} ({why})" for p, why in failures[:_SHOW])
        more = f"; ... ({len(failures) - _SHOW} more)" if len(failures) > _SHOW else ""
        super().__init__(
            f"{len(failures)} of {total} images could not be read: {shown}{more} "
            "(fix or remove them from the data set and run again)"
        )


def default_cache_dir() -> Path:
    """``$RETINASCREEN_CACHE``, else ``$XDG_CACHE_HOME/retinascreen/crops`` (``~/.cache``)."""
    if os.environ.get("RETINASCREEN_CACHE"):
        return Path(os.environ["RETINASCREEN_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "retinascreen" / "crops"


def _settings_json(preprocessing: Preprocessing) -> str:
    """The pre-processing and the crop code's version: what a cached crop's pixels depend on."""
    from retinascreen.data import crop

    return json.dumps(
        {**preprocessing.to_dict(), "crop_code": crop.CROP_CODE_VERSION}, sort_keys=True
    )


def cache_key(source: str | Path, preprocessing: Preprocessing) -> str:
    """Hex digest of the source file (resolved path, mtime, size) and the pre-processing."""
    path = Path(source).resolve()
    st = path.stat()
    text = f"{path}|{st.st_mtime_ns}|{st.st_size}|{_settings_json(preprocessing)}"
    return hashlib.sha256(text.encode()).hexdigest()


def settings_folder(cache_dir: str | Path | None, preprocessing: Preprocessing) -> Path:
    """The cache folder of one pre-processing (``cache_dir`` None: :func:`default_cache_dir`)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    digest = hashlib.sha256(_settings_json(preprocessing).encode()).hexdigest()[:12]
    return cache_dir / f"s{preprocessing.size}-{digest}"


def _write_crop(source: Path, target: Path, preprocessing: Preprocessing) -> None:
    from retinascreen.data.images import load_image

    crop = preprocessing.apply(load_image(source))
    size = preprocessing.size
    if crop.shape != (size, size, 3) or crop.dtype != np.uint8:
        raise ValueError(
            f"pre-processing gave {crop.shape} {crop.dtype}, not ({size}, {size}, 3) uint8"
        )
    write_crop_png(crop, target)


def write_crop_png(crop: np.ndarray, target: Path) -> None:
    """Write an RGB crop to ``target`` as PNG, atomically (an interrupted run never leaves half
    a crop in the cache)."""
    tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.png")
    if not cv2.imwrite(
        str(tmp), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ):
        raise OSError(f"could not write {tmp}")
    os.replace(tmp, target)


def cache_crops(
    records: Sequence[Record],
    preprocessing: Preprocessing,
    cache_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    progress: bool | None = None,
) -> list[Path]:
    """Decode and crop every record once into ``cache_dir``; return the crop paths in order.

    Crops already in the cache are reused. Work runs on ``workers`` threads (OpenCV and Pillow
    release the GIL). Photos that cannot be decoded are gathered and raised together as
    :class:`UnreadableImagesError` after the others are cached. ``progress=None`` shows a bar
    on a terminal or when there are many photos to crop.
    """
    folder = settings_folder(cache_dir, preprocessing)
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / "preprocessing.json"
    if not settings.exists():
        settings.write_text(_settings_json(preprocessing) + "\n")

    failures: list[tuple[Path, str]] = []
    targets: list[Path] = []
    todo: list[tuple[Path, Path]] = []
    for record in records:
        try:
            target = folder / f"{cache_key(record.path, preprocessing)}.png"
        except OSError as exc:
            failures.append((Path(record.path), exc.strerror or str(exc)))
            continue
        targets.append(target)
        if not target.exists():
            todo.append((Path(record.path), target))
    todo = list(dict(todo).items())  # a photo listed twice is cropped once

    if todo:
        show = progress if progress is not None else (sys.stderr.isatty() or len(todo) >= 500)
        n_workers = workers or min(8, os.cpu_count() or 1)

        def work(item: tuple[Path, Path]) -> tuple[Path, str | None]:
            source, target = item
            try:
                _write_crop(source, target, preprocessing)
            except (RetinascreenError, OSError, ValueError, cv2.error) as exc:
                return source, _reason(exc)
            return source, None

        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            results = pool.map(work, todo)
            for source, error in tqdm(
                results,
                total=len(todo),
                desc="cropping",
                unit="img",
                disable=not show,
                file=sys.stderr,
            ):
                if error is not None:
                    failures.append((source, error))
    log.info(
        "crop cache %s: %d new, %d reused",
        folder,
        len(todo),
        len(records) - len(todo) - len(failures),
    )
    if failures:
        raise UnreadableImagesError(failures, len(records))
    return targets


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(": ", 1)[1] if isinstance(exc, RetinascreenError) and ": " in text else text


def augmenter(seed: int = 0) -> keras.Sequential:
    """Random flips, rotation, zoom, brightness and contrast on RGB 0..255 batches.

    Fundus photos have no natural orientation, so any rotation and both flips are fair; the
    black surround is kept black (constant fill).
    """
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal_and_vertical", seed=seed),
            keras.layers.RandomRotation(0.5, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom((-0.1, 0.1), fill_mode="constant", seed=seed + 2),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 3),
            keras.layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 4),
        ],
        name="augmentation",
    )


def make_dataset(
    records: Sequence[Record],
    *,
    preprocessing: Preprocessing,
    batch_size: int,
    training: bool,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    augment: bool = True,
    workers: int | None = None,
    alternatives: Sequence[Sequence[Path]] | None = None,
) -> tf.data.Dataset:
    """A tf.data pipeline of ``(images float32 0..255 (B, S, S, 3), labels int32 (B,))``.

    Crops come from :func:`cache_crops` (decoded once). With ``training`` the order is shuffled
    every epoch (seeded) and, when ``augment``, batches are augmented in the tf.data map (not in
    the model); otherwise the order is that of ``records`` and the pixels are exactly the crops.
    """
    if not records:
        raise DatasetError("no images to build a data set from")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    crops = cache_crops(records, preprocessing, cache_dir, workers=workers)
    import tensorflow as tf

    size = preprocessing.size
    labels = tf.constant([r.grade for r in records], dtype=tf.int32)
    if training and alternatives:
        if len(alternatives) != len(crops) or len({len(a) for a in alternatives}) != 1:
            raise ValueError("alternatives needs the same number of crops for every record")
        table = tf.constant(
            [[str(p), *map(str, alt)] for p, alt in zip(crops, alternatives, strict=True)]
        )
        n_alt = len(alternatives[0])
        ds = tf.data.Dataset.from_tensor_slices((table, labels))
        ds = ds.shuffle(len(crops), seed=seed, reshuffle_each_iteration=True)

        def pick(row: Any, label: Any) -> tuple[Any, Any]:
            own = tf.random.uniform((), seed=seed) < 0.5
            other = 1 + tf.random.uniform((), maxval=n_alt, dtype=tf.int32, seed=seed + 1)
            return row[tf.where(own, 0, other)], label

        ds = ds.map(pick, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = tf.data.Dataset.from_tensor_slices((tf.constant([str(p) for p in crops]), labels))
        if training:
            ds = ds.shuffle(len(crops), seed=seed, reshuffle_each_iteration=True)

    def read(path: Any, label: Any) -> tuple[Any, Any]:
        image = tf.io.decode_png(tf.io.read_file(path), channels=3)
        image = tf.ensure_shape(image, (size, size, 3))
        return tf.cast(image, tf.float32), label

    ds = ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training and augment:
        layers = augmenter(seed)

        def jitter(images: Any, labels: Any) -> tuple[Any, Any]:
            out = layers(images, training=True)
            return tf.clip_by_value(tf.cast(out, tf.float32), 0.0, 255.0), labels

        ds = ds.map(jitter, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
