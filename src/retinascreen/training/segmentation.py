"""Training and measuring segmentation models (vessels on DRIVE, lesions on synthetic photos).

- :class:`SegData`: fundus crops (as the model sees them), per-class target masks and the
  field of view, built from DRIVE (:func:`drive_data`) or synthetic photos
  (:func:`synthetic_data`);
- :class:`PatchSampler`: random patches with augmentation (flips, 90° rotations,
  brightness/contrast/gamma, a little colour), centred in the field (and on a lesion for half
  of them when ``lesion_bias``);
- loss = binary cross-entropy + soft Dice; :func:`train_segmenter` keeps the weights with the
  best validation Dice, stops early or when the time budget is spent, and picks one
  binarisation threshold per class on validation;
- :func:`lesion_free_data`: healthy eyes as negatives (all-empty targets);
- :func:`false_alarms`: where a model marks a lesion nobody marked (hard negatives);
- :func:`pixel_metrics`: AUC, F1 (= Dice), sensitivity, specificity, accuracy inside the field.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import ops

from retinascreen.data.drive import DrivePhoto, crop_with_masks
from retinascreen.data.fundus import apply_clahe, find_disc

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.025), 3)


@dataclass
class SegData:
    """Crops ``views`` (N, S, S, 3) uint8, ``targets`` (N, S, S, C) bool, ``fields`` (N, S, S) bool."""

    views: np.ndarray
    targets: np.ndarray
    fields: np.ndarray
    names: list[str]

    def subset(self, index: Sequence[int]) -> SegData:
        idx = list(index)
        return SegData(
            self.views[idx], self.targets[idx], self.fields[idx], [self.names[i] for i in idx]
        )

    def __add__(self, other: SegData) -> SegData:
        return SegData(
            np.concatenate([self.views, other.views]),
            np.concatenate([self.targets, other.targets]),
            np.concatenate([self.fields, other.fields]),
            self.names + other.names,
        )


def drive_data(
    photos: Sequence[DrivePhoto], size: int, *, second: bool = False, clahe: bool = False
) -> SegData:
    """DRIVE photos cropped to ``size`` (then CLAHE when ``clahe``, as the card's
    pre-processing does); target = 1st observer (2nd when ``second``)."""
    views, targets, fields = [], [], []
    for photo in photos:
        truth = photo.second if second else photo.vessels
        if truth is None:
            raise ValueError(f"{photo.name} has no second-observer annotation")
        view, cut = crop_with_masks(
            photo.image, {"v": truth, "f": photo.field}, size, disc=find_disc(photo.image)
        )
        views.append(apply_clahe(view) if clahe else view)
        targets.append(cut["v"][:, :, None])
        fields.append(cut["f"])
    return SegData(np.stack(views), np.stack(targets), np.stack(fields), [p.name for p in photos])


def synthetic_data(seeds: Sequence[int], size: int, classes: Sequence[str]) -> SegData:
    """Synthetic photos (grades 1-4 mostly, so lesions are common) cropped to ``size``."""
    from retinascreen.synthetic import generate

    views, targets, fields = [], [], []
    for seed in seeds:
        grade = (1, 2, 3, 4, 2, 3, 4, 0)[seed % 8]
        sample = generate(int(seed), grade, size=size)
        disc = find_disc(sample.image)
        h, w = sample.image.shape[:2]
        field = np.zeros((h, w), bool)
        if disc is not None:
            yy, xx = np.ogrid[:h, :w]
            field = (xx - disc.cx) ** 2 + (yy - disc.cy) ** 2 <= (0.97 * disc.radius) ** 2
        masks = {name: sample.masks[name] for name in classes}
        view, cut = crop_with_masks(sample.image, {**masks, "__field": field}, size, disc=disc)
        views.append(view)
        targets.append(np.stack([cut[name] for name in classes], axis=-1))
        fields.append(cut["__field"])
    return SegData(
        np.stack(views), np.stack(targets), np.stack(fields), [f"synthetic-{s}" for s in seeds]
    )


def lesion_free_data(
    photos: Sequence[tuple[str, np.ndarray]], size: int, n_classes: int, *, clahe: bool = False
) -> SegData:
    """``(name, rgb)`` photos of eyes without any lesion (e.g. ICDR grade 0), cropped as the
    served segmenter crops them, with all-empty targets: negatives that teach a lesion model
    that drusen, reflexes and pigment on a healthy eye are not lesions."""
    from retinascreen.data.fundus import field_of_view

    views, fields = [], []
    for _, rgb in photos:
        disc = find_disc(rgb)
        view, _ = crop_with_masks(rgb, {}, size, disc=disc)
        views.append(apply_clahe(view) if clahe else view)
        fields.append(field_of_view(rgb, size, disc=disc))
    targets = np.zeros((len(views), size, size, n_classes), bool)
    return SegData(np.stack(views), targets, np.stack(fields), [name for name, _ in photos])


def augment(
    rng: np.random.Generator, image: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Random flips, 90° rotations, brightness/contrast/gamma and a little colour, on a patch."""
    if rng.random() < 0.5:
        image, target = image[:, ::-1], target[:, ::-1]
    if rng.random() < 0.5:
        image, target = image[::-1], target[::-1]
    k = int(rng.integers(4))
    image, target = np.rot90(image, k), np.rot90(target, k)
    x = image.astype(np.float32) / 255.0
    x = x ** float(np.exp(rng.normal(0.0, 0.15)))  # gamma
    mean = x.mean()
    x = (x - mean) * float(rng.uniform(0.75, 1.3)) + mean  # contrast
    x = x * float(rng.uniform(0.8, 1.2))  # brightness
    x = x * rng.uniform(0.92, 1.08, size=3).astype(np.float32)  # colour
    return np.clip(x * 255.0, 0, 255), target


class PatchSampler(keras.utils.PyDataset):
    """``steps`` batches a pass of ``batch`` random augmented ``patch`` x ``patch`` crops."""

    def __init__(
        self,
        data: SegData,
        *,
        patch: int,
        batch: int,
        steps: int,
        seed: int = 0,
        lesion_bias: float = 0.0,
    ) -> None:
        super().__init__()
        self.data, self.patch, self.batch, self.steps = data, patch, batch, steps
        self.lesion_bias = lesion_bias
        self.rng = np.random.default_rng(seed)
        side = data.views.shape[1]
        half = patch // 2
        self.inner = [
            np.argwhere(f[half : side - half + 1, half : side - half + 1]) for f in data.fields
        ]
        self.lesion = [
            np.argwhere(t.any(-1)[half : side - half + 1, half : side - half + 1])
            for t in data.targets
        ]

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for _ in range(self.batch):
            i = int(self.rng.integers(len(self.data.views)))
            pool = self.inner[i]
            if self.lesion_bias and len(self.lesion[i]) and self.rng.random() < self.lesion_bias:
                pool = self.lesion[i]
            if len(pool):
                top, left = pool[self.rng.integers(len(pool))]
            else:
                top = left = 0
            cut = (slice(top, top + self.patch), slice(left, left + self.patch))
            x, y = augment(self.rng, self.data.views[i][cut], self.data.targets[i][cut])
            xs.append(x)
            ys.append(y)
        return np.stack(xs).astype(np.float32), np.stack(ys).astype(np.float32)


@keras.saving.register_keras_serializable(package="retinascreen")
def bce_dice_loss(y_true: Any, y_pred: Any) -> Any:
    """Binary cross-entropy plus (1 - soft Dice), Dice per class over the batch, averaged."""
    eps = 1e-6
    p = ops.clip(y_pred, eps, 1.0 - eps)
    bce = -ops.mean(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
    inter = ops.sum(y_true * y_pred, axis=(0, 1, 2))
    total = ops.sum(y_true, axis=(0, 1, 2)) + ops.sum(y_pred, axis=(0, 1, 2))
    dice = (2.0 * inter + 1.0) / (total + 1.0)
    return bce + 1.0 - ops.mean(dice)


def predict_maps(
    model: keras.Model, views: np.ndarray, batch: int = 2, *, flip_average: bool = False
) -> np.ndarray:
    """Probability maps (N, S, S, C) float32 for crops whose side is a multiple of 2**depth
    (``flip_average``: averaged with the mirrored crops' maps, as the Segmenter serves them)."""
    from retinascreen.models.engines import flip_averaged

    def predict(chunk: np.ndarray) -> np.ndarray:
        return np.asarray(model(chunk, training=False))

    def maps(chunk: np.ndarray) -> np.ndarray:
        return flip_averaged(predict, chunk) if flip_average else predict(chunk)

    out = [maps(views[i : i + batch].astype(np.float32)) for i in range(0, len(views), batch)]
    return np.concatenate(out).astype(np.float32)


def false_alarms(
    model: keras.Model, data: SegData, *, margin: int = 12, level: float = 0.5
) -> list[np.ndarray]:
    """Per photo, the field pixels at least ``margin`` px from every marked lesion where
    ``model`` scores some class ``level`` or more: its false alarms on ``data`` (vessel sheen,
    the disc's rim, drusen-like spots), to centre hard-negative training patches on."""
    import cv2

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    masks = []
    for i in range(len(data.names)):
        scores = predict_maps(model, data.views[i : i + 1], batch=1)[0].max(-1)
        near = cv2.dilate(data.targets[i].any(-1).astype(np.uint8), kernel).astype(bool)
        masks.append((scores >= level) & data.fields[i] & ~near)
    return masks


def _f1_at(scores: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    pred = scores >= threshold
    tp = np.count_nonzero(pred & truth)
    denom = np.count_nonzero(pred) + np.count_nonzero(truth)
    return 2.0 * tp / denom if denom else 1.0


def choose_thresholds(maps: np.ndarray, data: SegData) -> list[float]:
    """Per class, the threshold in :data:`THRESHOLD_GRID` with the best F1 inside the fields."""
    chosen = []
    for c in range(maps.shape[-1]):
        scores, truth = maps[..., c][data.fields], data.targets[..., c][data.fields]
        f1s = [_f1_at(scores, truth, t) for t in THRESHOLD_GRID]
        chosen.append(float(THRESHOLD_GRID[int(np.argmax(f1s))]))
    return chosen


def pixel_metrics(
    scores: np.ndarray, truth: np.ndarray, field: np.ndarray, threshold: float | None
) -> dict[str, float | None]:
    """AUC (None for binary ``scores`` or one-class truth), F1/Dice, sensitivity, specificity,
    accuracy over the pixels inside ``field``, at ``threshold`` (``scores`` already binary when None)."""
    from sklearn.metrics import roc_auc_score

    s, t = scores[field].astype(np.float32), truth[field].astype(bool)
    pred = s >= threshold if threshold is not None else s > 0.5
    tp = np.count_nonzero(pred & t)
    tn = np.count_nonzero(~pred & ~t)
    fp = np.count_nonzero(pred & ~t)
    fn = np.count_nonzero(~pred & t)
    auc = None
    if threshold is not None and 0 < t.sum() < t.size:
        auc = float(roc_auc_score(t, s))
    return {
        "auc": auc,
        "f1": 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 1.0,
        "sensitivity": tp / (tp + fn) if (tp + fn) else None,
        "specificity": tn / (tn + fp) if (tn + fp) else None,
        "accuracy": (tp + tn) / max(1, t.size),
    }


def mean_dice(maps: np.ndarray, data: SegData, thresholds: Sequence[float]) -> list[float]:
    """Per-class Dice pooled over all photos' field pixels, at ``thresholds``."""
    return [
        _f1_at(maps[..., c][data.fields], data.targets[..., c][data.fields], thresholds[c])
        for c in range(maps.shape[-1])
    ]


def validation_dice(model: keras.Model, data: SegData, batch: int = 2) -> float:
    """The score that picks a model's weights: the mean over classes of the pooled Dice, each
    class at its best threshold on ``data``."""
    maps = predict_maps(model, data.views, batch=batch)
    return float(np.mean(mean_dice(maps, data, choose_thresholds(maps, data))))


class _Validate(keras.callbacks.Callback):
    def __init__(self, data: SegData, budget_s: float, patience: int, log: Any) -> None:
        super().__init__()
        self.data, self.budget_s, self.patience, self.log = data, budget_s, patience, log
        self.best, self.best_weights, self.wait = -1.0, None, 0
        self.start = time.monotonic()
        self.history: list[dict[str, float]] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        score = validation_dice(self.model, self.data)
        elapsed = time.monotonic() - self.start
        row = {"epoch": epoch + 1, "loss": float((logs or {}).get("loss", np.nan))}
        row |= {"val_dice": score, "elapsed_s": round(elapsed, 1)}
        self.history.append(row)
        self.log(f"epoch {epoch + 1}: loss {row['loss']:.4f} val dice {score:.4f} {elapsed:.0f}s")
        if score > self.best:
            self.best, self.best_weights, self.wait = score, self.model.get_weights(), 0
        else:
            self.wait += 1
        if self.wait >= self.patience or elapsed > self.budget_s:
            self.model.stop_training = True


@dataclass
class TrainResult:
    thresholds: list[float]
    val_dice: list[float]
    history: list[dict[str, float]]
    seconds: float


def train_segmenter(
    model: keras.Model,
    train: SegData,
    val: SegData,
    *,
    patch: int = 96,
    batch: int = 16,
    steps: int = 100,
    max_epochs: int = 200,
    budget_s: float = 1200.0,
    patience: int = 8,
    learning_rate: float = 2e-3,
    lesion_bias: float = 0.0,
    seed: int = 0,
    log: Any = print,
) -> TrainResult:
    """Fit ``model`` on patches of ``train``; restore the best validation weights; thresholds."""
    start = time.monotonic()
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, steps * max_epochs), alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=bce_dice_loss)
    sampler = PatchSampler(
        train, patch=patch, batch=batch, steps=steps, seed=seed, lesion_bias=lesion_bias
    )
    check = _Validate(val, budget_s, patience, log)
    model.fit(sampler, epochs=max_epochs, callbacks=[check], verbose=0)
    if check.best_weights is not None:
        model.set_weights(check.best_weights)
    maps = predict_maps(model, val.views)
    thresholds = choose_thresholds(maps, val)
    return TrainResult(
        thresholds, mean_dice(maps, val, thresholds), check.history, time.monotonic() - start
    )
