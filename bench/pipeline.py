"""Is the input pipeline ever the bottleneck? Images/s of the pipeline alone vs a training step.

Writes a small synthetic data set in a temporary folder, times the one-off crop caching, then
the tf.data pipeline from cached crops (with and without augmentation) and the training step of
a small Keras model on the same batches, and prints them side by side with their ratio.

    .venv/bin/python bench/pipeline.py --n 64 --size 256 --batch-size 16
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from retinascreen.backend import ensure_backend
from retinascreen.data.datasets import load_dataset
from retinascreen.data.fundus import Preprocessing
from retinascreen.data.pipeline import cache_crops, make_dataset


def write_photos(out: Path, n: int, size: int) -> Path:
    """An APTOS-layout data set: synthetic fundus photos if available, else plain drawn discs."""
    try:
        from retinascreen.synthetic import write_dataset
    except ImportError:
        write_dataset = None
    if write_dataset is not None:
        return Path(write_dataset(out, n, size=size, seed=0, layout="aptos"))
    import csv

    import cv2

    rng = np.random.default_rng(0)
    (out / "train_images").mkdir(parents=True)
    with (out / "train.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id_code", "diagnosis"])
        for i in range(n):
            img = np.zeros((size, int(size * 1.3), 3), np.uint8)
            centre = (img.shape[1] // 2, size // 2)
            cv2.circle(img, centre, int(size * 0.47), (40, 90, 190), -1)  # BGR orange disc
            noise = rng.integers(0, 25, img.shape, dtype=np.uint8)
            img = cv2.add(img, noise) * (img > 0)
            for _ in range(int(rng.integers(0, 30))):
                xy = (
                    int(rng.integers(size // 4, size)),
                    int(rng.integers(size // 4, 3 * size // 4)),
                )
                cv2.circle(img, xy, int(rng.integers(1, 4)), (20, 20, 120), -1)
            cv2.imwrite(str(out / "train_images" / f"b{i:04d}.png"), img)
            writer.writerow([f"b{i:04d}", i % 5])
    return out


def small_model(size: int, backbone: str):
    ensure_backend()
    import keras

    try:
        from retinascreen.models.build import build_model

        model = build_model(backbone, "wise-srnet", size=size)
        name = f"{backbone} + wise-srnet"
    except (ImportError, ValueError) as exc:  # fall back to a tiny conv net
        print(f"(build_model unavailable: {exc}; using a small conv net)", file=sys.stderr)
        inputs = keras.Input((size, size, 3))
        x = keras.layers.Rescaling(1 / 255)(inputs)
        for width in (16, 32, 64, 128):
            x = keras.layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
        outputs = keras.layers.Dense(5, activation="softmax")(
            keras.layers.GlobalAveragePooling2D()(x)
        )
        model, name = keras.Model(inputs, outputs), "small conv net"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model, name


def rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="photos in the data set")
    parser.add_argument("--source-size", type=int, default=512, help="size of the source photos")
    parser.add_argument("--size", type=int, default=256, help="training size of the crops")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=24, help="pipeline batches timed")
    parser.add_argument("--train-batches", type=int, default=4, help="training steps timed")
    parser.add_argument("--backbone", default="mini_xception")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = write_photos(Path(tmp) / "data", args.n, args.source_size)
        records = load_dataset(root, "aptos")
        prep = Preprocessing(size=args.size)
        cache = Path(tmp) / "cache"

        t = time.perf_counter()
        cache_crops(records, prep, cache, progress=False)
        cold = time.perf_counter() - t
        t = time.perf_counter()
        cache_crops(records, prep, cache, progress=False)
        warm = time.perf_counter() - t

        def pipeline_rate(augment: bool) -> tuple[float, list]:
            ds = make_dataset(
                records,
                preprocessing=prep,
                batch_size=args.batch_size,
                training=True,
                cache_dir=cache,
                augment=augment,
            ).repeat()
            it = iter(ds)
            kept = [next(it) for _ in range(2)]  # warm-up (graph tracing)
            t = time.perf_counter()
            n = 0
            for _ in range(args.batches):
                x, y = next(it)
                n += int(x.shape[0])
                if len(kept) < 8:
                    kept.append((x, y))
            return rate(n, time.perf_counter() - t), kept

        plain_rate, _ = pipeline_rate(augment=False)
        aug_rate, batches = pipeline_rate(augment=True)

        model, name = small_model(args.size, args.backbone)
        model.train_on_batch(*batches[0])  # warm-up (compilation)
        t = time.perf_counter()
        n = 0
        for i in range(args.train_batches):
            x, y = batches[i % len(batches)]
            model.train_on_batch(x, y)
            n += int(x.shape[0])
        train_rate = rate(n, time.perf_counter() - t)

    print(
        f"data: {args.n} photos {args.source_size}px -> crops {args.size}px, batch {args.batch_size}"
    )
    print(f"{'crop caching (one-off: decode, crop, write)':<44}{rate(args.n, cold):10.1f} img/s")
    print(f"{'crop cache lookup when warm':<44}{rate(args.n, warm):10.1f} img/s")
    print(f"{'pipeline, no augmentation':<44}{plain_rate:10.1f} img/s")
    print(f"{'pipeline, with augmentation':<44}{aug_rate:10.1f} img/s")
    print(f"{'training step (' + name + ')':<44}{train_rate:10.1f} img/s")
    ratio = aug_rate / train_rate
    verdict = "pipeline is not the bottleneck" if ratio > 1 else "PIPELINE IS THE BOTTLENECK"
    print(f"ratio pipeline/training: {ratio:.1f}x ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
