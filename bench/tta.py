"""Test-time augmentation: does averaging over flips grade EyePACS better than one pass?

For a model (default: the bundled one) on its run's validation and test splits of
``../shared/data/eyepacs-256`` (the split recorded in its model card), prints QWK and referable
AUC from one pass, and from the mean probabilities over the photo and its horizontal,
vertical and double flips (4 passes). TTA is for the product only if it helps on validation.

    .venv/bin/python bench/tta.py [MODEL]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default=None)
    args = parser.parse_args(argv)

    from retinascreen.data.datasets import load_dataset, split_dataset
    from retinascreen.data.images import load_image
    from retinascreen.models.metrics import compute_metrics
    from retinascreen.serving.predictor import Predictor

    predictor = Predictor(args.model)
    config = predictor.card.extra.get("config", {}) if predictor.card else {}
    seed = config.get("split_seed")
    seed = config.get("seed", 0) if seed is None else seed
    splits = split_dataset(
        load_dataset(SHARED / "eyepacs-256", "eyepacs"),
        val=config.get("val", 0.15),
        test=config.get("test", 0.15),
        seed=seed,
    )
    threshold = float(predictor.card.extra.get("referable_threshold", 0.5))
    print(f"model: {predictor.model_info.notice}")
    for name in ("val", "test"):
        records = splits[name]
        x = np.stack([predictor.preprocess(load_image(r.path)) for r in records])
        y = np.array([r.grade for r in records])
        single = predictor.predict_arrays(x)
        flips = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]]
        averaged = np.mean([predictor.predict_arrays(np.ascontiguousarray(f)) for f in flips], 0)
        for label, p in (("one pass", single), ("4-flip TTA", averaged)):
            m = compute_metrics(
                y, p, referable_threshold=threshold, grade_rule=predictor.grade_rule
            )
            print(
                f"{name:4s} {label:10s}: QWK {m['qwk']:.3f}  referable AUC "
                f"{m['referable']['auc']:.3f}  (n={m['n']})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
