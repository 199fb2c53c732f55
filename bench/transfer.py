"""Transfer learning probe: ImageNet EfficientNet-Lite features, pre-processings and heads.

For each (backbone, pre-processing) the frozen ImageNet backbone's feature maps of every photo
of ``../shared/data/eyepacs-256`` (the product's patient-grouped 70/15/15 split, split seed 0)
and of ``../shared/data/srahim-dr`` (raw photos of another clinic: external, never trained on)
are computed once and cached; then each head (``gap``, ``wise-srnet``) is trained on the frozen
maps with the product's regression objective (MSE on the grade, thresholds tuned for QWK on
validation) for several seeds. Printed and written to ``bench/results/transfer-real.md``:
test QWK and referable AUC, and on srahim-dr QWK, AUC and sensitivity / specificity at the
threshold chosen on validation for 90 % sensitivity; mean ± standard deviation over seeds.

This compares heads and inputs on a frozen backbone (the seeds' transfer-learning phase 1);
fine-tuning every combination is out of a 2-core budget, the bundled model fine-tunes the
winner (``configs/eyepacs-lite.toml``).

    python bench/transfer.py                      # all combinations, 3 seeds
    python bench/transfer.py --combos efficientnet_lite0:equalize --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "runs" / "transfer"
RESULTS = ROOT / "bench" / "results" / "transfer-real.md"
COMBOS = (
    "efficientnet_lite0:equalize",
    "efficientnet_lite0:plain",
    "efficientnet_lite0:ben_graham",
    "efficientnet_lite2:equalize",
)
HEADS = ("gap", "wise-srnet")


def preprocessing(kind: str, size: int):  # noqa: ANN201 - bench script
    from retinascreen.data.fundus import Preprocessing

    return Preprocessing(
        size, ben_graham=kind == "ben_graham", equalize=kind == "equalize", clahe=kind == "clahe"
    )


def load_records():  # noqa: ANN201
    from retinascreen.data.datasets import load_dataset, split_dataset

    eyepacs = split_dataset(
        load_dataset(DATA / "eyepacs-256", "eyepacs"), val=0.15, test=0.15, seed=0
    )
    external = load_dataset(DATA / "srahim-dr", "folders")
    return {**eyepacs, "srahim": external}


def features(
    backbone: str, kind: str, size: int, records: dict, cut: str | None = None
) -> dict[str, np.ndarray]:
    """Feature maps (float16) per split, cached in runs/transfer.

    ``cut``: the name of a backbone layer whose *input* is returned instead of the last map
    (the frozen lower part's activations, for fine-tuning the stages above it).
    """
    import cv2
    import keras

    from retinascreen.data.pipeline import cache_crops
    from retinascreen.models.backbones import create_backbone

    out: dict[str, np.ndarray] = {}
    model = None
    for split, recs in records.items():
        suffix = f"-{cut}" if cut else ""
        path = CACHE / f"{backbone}-{kind}-{size}{suffix}-{split}.npy"
        if path.is_file():
            out[split] = np.load(path)
            continue
        if model is None:
            inputs = keras.Input((size, size, 3))
            model = create_backbone(backbone, inputs, weights="imagenet")
            if cut:
                model = keras.Model(model.input, model.get_layer(cut).input)
        crops = cache_crops(recs, preprocessing(kind, size), progress=False)
        maps = []
        for start in range(0, len(crops), 32):
            batch = np.stack(
                [
                    cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                    for p in crops[start : start + 32]
                ]
            ).astype(np.float32)
            maps.append(model.predict(batch, verbose=0).astype(np.float16))
        out[split] = np.concatenate(maps)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, out[split])
        print(f"  features {backbone} {kind} {split}: {out[split].shape}", flush=True)
    return out


def _train_head(head: str, feats: dict, grades: dict, seed: int) -> dict[str, float]:
    return score_row(head_scores(head, feats, grades, seed), grades)


def head_scores(
    head: str, feats: dict, grades: dict, seed: int, train_weights: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Regression scores per split of ``head`` trained on the frozen ``feats["train"]``."""
    import keras

    from retinascreen.models.heads import get_head

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(feats["train"].shape[1:])
    probabilities = get_head(head)(inputs, 5)
    pooled = probabilities._keras_history.operation.input  # the features before the softmax
    score = keras.layers.Dense(
        1, bias_initializer=keras.initializers.Constant(float(np.mean(grades["train"])))
    )(pooled)
    model = keras.Model(inputs, score)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    stop = keras.callbacks.EarlyStopping(patience=6, restore_best_weights=True)
    model.fit(
        feats["train"].astype(np.float32),
        grades["train"].astype(np.float32),
        sample_weight=train_weights,
        validation_data=(feats["val"].astype(np.float32), grades["val"].astype(np.float32)),
        epochs=60,
        batch_size=64,
        callbacks=[stop],
        verbose=0,
    )
    return {k: model.predict(v.astype(np.float32), verbose=0).reshape(-1) for k, v in feats.items()}


def ordinal_fit(
    scores: dict[str, np.ndarray], grades: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], float]:
    """Grade probabilities per split (ordinal cuts fitted on validation) and the referable
    threshold chosen on validation for 90 % sensitivity."""
    from retinascreen.models.ordinal import fit_ordinal, ordinal_probabilities
    from retinascreen.training.evaluation import choose_threshold

    thresholds, temperature = fit_ordinal(grades["val"], scores["val"])
    probs = {k: ordinal_probabilities(s, thresholds, temperature) for k, s in scores.items()}
    cut, _rule = choose_threshold(grades["val"], probs["val"], 0.9)
    return probs, cut


def score_row(scores: dict[str, np.ndarray], grades: dict[str, np.ndarray]) -> dict[str, float]:
    """Test and srahim-dr figures of regression ``scores`` (ordinal cuts fitted on validation)."""
    from retinascreen.models.metrics import (
        quadratic_kappa,
        referable_operating_point,
        referable_scores,
    )

    probs, cut = ordinal_fit(scores, grades)
    row: dict[str, float] = {}
    for split in ("test", "srahim"):
        y = grades[split]
        point = referable_operating_point(y, referable_scores(probs[split]), cut)
        row[f"{split}_qwk"] = quadratic_kappa(y, probs[split].argmax(axis=1))
        row[f"{split}_auc"] = point["auc"]
        row[f"{split}_sens"] = point["sensitivity"]
        row[f"{split}_spec"] = point["specificity"]
    return row


EVALUATION = (
    "eyepacs-256 test split (608 photos, patient-grouped, split seed 0); srahim-dr: 596 raw "
    "photos of another clinic, never trained on; sensitivity and specificity at the referable "
    "threshold chosen on validation for 90 % sensitivity. Mean ± standard deviation over seeds "
    "(the split is fixed; the seed changes the head's initialisation and the batch order)."
)
"""How every table of these benches is measured (for their headers)."""

TABLE_HEADER = (
    "| backbone | input | head | seeds | test QWK | test AUC | srahim QWK | srahim AUC "
    "| srahim sens. | srahim spec. |"
)
TABLE_KEYS = ("test_qwk", "test_auc", "srahim_qwk", "srahim_auc", "srahim_sens", "srahim_spec")


def mean_sd(rows: list[dict[str, float]], key: str) -> str:
    """``"0.457 ± 0.028"``: mean and standard deviation of ``key`` over the seeds' rows."""
    values = np.array([r[key] for r in rows])
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0:.3f}"


def table_row(labels: tuple[str, ...], rows: list[dict[str, float]]) -> str:
    """A Markdown row: the labels, the number of seeds, then mean ± SD of each figure."""
    cells = [mean_sd(rows, k) for k in TABLE_KEYS]
    return "| " + " | ".join([*labels, str(len(rows)), *cells]) + " |"


def graded_records() -> tuple[dict, dict[str, np.ndarray]] | None:
    """The records per split and their grades; None, after saying why, without the data."""
    if not (DATA / "eyepacs-256").is_dir():
        print(f"error: {DATA} not found")
        return None
    records = load_records()
    return records, {k: np.array([r.grade for r in v]) for k, v in records.items()}


def merged_rows(new: list[str], results: Path = RESULTS) -> list[str]:
    """``new`` table rows plus the rows of ``results`` for combinations not measured now."""

    def key(line: str) -> tuple[str, ...]:  # (backbone, input, head)
        return tuple(cell.strip() for cell in line.strip("|").split("|")[:3])

    measured = {key(line) for line in new}
    old = results.read_text().splitlines() if results.is_file() else []
    kept = [line for line in old if line.startswith("| efficientnet") and key(line) not in measured]
    return kept + new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--combos", nargs="*", default=list(COMBOS))
    parser.add_argument("--heads", nargs="*", default=list(HEADS))
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args(argv)
    loaded = graded_records()
    if loaded is None:
        return 2
    records, grades = loaded
    print("photos: " + ", ".join(f"{k} {len(v)}" for k, v in records.items()), flush=True)
    lines = [TABLE_HEADER, "|---" * 10 + "|"]
    raw: dict[str, list[dict[str, float]]] = {}
    for combo in args.combos:
        backbone, kind = combo.split(":")
        started = time.perf_counter()
        feats = features(backbone, kind, args.size, records)
        print(f"{combo}: features in {time.perf_counter() - started:.0f} s", flush=True)
        for head in args.heads:
            rows = [_train_head(head, feats, grades, seed) for seed in args.seeds]
            raw[f"{combo}:{head}"] = rows
            line = table_row((backbone, kind, head), rows)
            lines.append(line)
            print(line, flush=True)
    lines[2:] = merged_rows(lines[2:])
    table = "\n".join(lines)
    print(table)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json").write_text(json.dumps(raw, indent=1))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Frozen ImageNet EfficientNet-Lite features: inputs and heads\n\n"
        f"`python bench/transfer.py --size {args.size}` ({time.strftime('%Y-%m-%d')}, 2 CPU "
        "cores; rows of combinations not given in `--combos` are kept from the previous "
        "table). Frozen backbone, head trained on the cached feature maps (regression on the "
        "grade, MSE, Adam 1e-3, early stopping on validation loss), thresholds tuned for QWK "
        f"on validation; {EVALUATION}\n\n"
    )
    RESULTS.write_text(header + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
