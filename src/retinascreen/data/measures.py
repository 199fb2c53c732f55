"""What a quality verdict is made of: the measures, their thresholds and their reasons.

:data:`MEASURES` is the table of measures, one row each (name, function, threshold, reason,
and the measures that must pass first), so a new measure is one row; :func:`quality_measures`
measures a photo's field at a fixed working scale, :data:`REASON_ADVICE` says what a failing
reason means and what the photographer can do. The verdict itself is :func:`retinascreen.data.quality.assess_quality`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from retinascreen.data.crop import circle_mask, crop_square, disc_square
from retinascreen.data.field import Disc, as_rgb

# Quality measures run on the disc cropped and resized to this size (size-independent blur).
QUALITY_SIZE = 256


REASON_NO_DISC = "no fundus disc found"
REASON_DARK = "too dark"
REASON_OVEREXPOSED = "over-exposed"
REASON_BLURRED = "blurred"
REASON_LOW_CONTRAST = "low contrast"
REASON_LEARNED = "poor overall quality (learned score)"

# Each reason in plain words, with what the photographer can do (web page and PDF report).
REASON_ADVICE = {
    REASON_NO_DISC: "No fundus field of view was found: this does not look like a colour "
    "photograph of the retina.",
    REASON_DARK: "Too dark, or partly in shadow (an eyelid or eyelashes): open the eye wider, "
    "centre the pupil and use more flash.",
    REASON_OVEREXPOSED: "Over-exposed or hazy: the retina is washed out by too much light or "
    "flare; use less flash and check the lens and the pupil's alignment.",
    REASON_BLURRED: "Out of focus: the vessels and fine detail are not sharp; refocus and hold "
    "the camera and the patient still.",
    REASON_LOW_CONTRAST: "Low contrast: the vessels barely stand out (haze, cataract or a dirty "
    "lens); clean the lens and retake.",
    REASON_LEARNED: "Poor overall quality: graders would likely reject this photograph (uneven "
    "light, haze in part of the field, spots or artefacts), though no single measure explains "
    "it; retake it, checking focus, pupil alignment and the lens.",
}


def explain_reasons(reasons: tuple[str, ...] | list[str]) -> list[str]:
    """The plain-words sentence of each reason (the reason itself if it has none)."""
    return [REASON_ADVICE.get(reason, reason) for reason in reasons]


def ramp(value: float, threshold: float, span: float) -> float:
    """0.5 at ``threshold``, 1 at ``threshold + span`` (span < 0 for 'lower is better')."""
    return float(np.clip(0.5 + 0.5 * (value - threshold) / span, 0.0, 1.0))


def quality_measures(rgb: np.ndarray, disc: Disc) -> dict[str, float]:
    """What the verdict is made of, measured inside the field at a fixed working scale.

    The field is cropped and resized so that its diameter is ~256 px (``QUALITY_SIZE``)
    whatever the file's resolution, and each measure is relative (a ratio, a share), so that
    contrast-stretched sets and raw camera photos are judged alike:
    ``brightness``: mean of max(R, G); ``shaded``: share of the field far darker (< 0.35x) than
    its bright part (an eyelid or lash shadow); ``clipped``: share of the field white in all
    three channels (over-exposure, flare); ``washed``: the green channel's 25th percentile,
    which is dim on any well-exposed fundus and bright when the exposure washed it out;
    ``colour``: mean spread between the channels over the brightness (a colour photograph of
    the retina is never grey: a grey disc is some other round thing); ``contrast``: green
    2nd-98th percentile spread over the mean green (haze and washed-out photos lose it);
    ``sharpness``: fine detail (a
    difference of Gaussians at 0.8-1.6 px) over coarser detail (1.6-3.2 px), which a defocus
    lowers and contrast does not change; ``vessels``: the 95th percentile of a black top-hat of
    the green channel (thin dark lines, 9 px) over the mean green: how visible the vessels are.
    """
    field = field_crop(rgb, disc)
    return {} if field is None else measures_of(*field)


def field_crop(rgb: np.ndarray, disc: Disc) -> tuple[np.ndarray, np.ndarray] | None:
    """The field cropped to (256, 256, 3) and the mask of its pixels inside the field.

    None when too little of the field is inside the photo to judge it.
    """
    crop, valid = crop_square(as_rgb(rgb), disc_square(disc), QUALITY_SIZE)
    inner = circle_mask(QUALITY_SIZE, 0.88) & valid
    inner = cv2.erode(inner.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if np.count_nonzero(inner) < 100:
        return None
    return crop, inner


class FieldStats:
    """The working crop of a field and what several measures share, each computed once."""

    def __init__(self, crop: np.ndarray, inner: np.ndarray) -> None:
        self.crop, self.inner = crop, inner

    @cached_property
    def green(self) -> np.ndarray:
        return self.crop[:, :, 1].astype(np.float32)

    @cached_property
    def pixels(self) -> np.ndarray:
        return self.crop[self.inner].astype(np.float32)  # (N, 3) RGB inside the field

    @cached_property
    def brightest(self) -> np.ndarray:
        return np.maximum(self.pixels[:, 0], self.pixels[:, 1])

    @cached_property
    def brightness(self) -> float:
        return float(self.brightest.mean())

    @cached_property
    def darkest(self) -> np.ndarray:
        return self.pixels.min(axis=1)

    @cached_property
    def mean_green(self) -> float:
        return float(self.pixels[:, 1].mean())

    def detail_ratio(self) -> float:
        """Fine detail (DoG 0.8-1.6 px) over coarser detail (1.6-3.2 px) inside the field."""
        blur_1, blur_2, blur_3 = (
            cv2.GaussianBlur(self.green, (0, 0), sigma) for sigma in (0.8, 1.6, 3.2)
        )
        fine, coarse = blur_1 - blur_2, blur_2 - blur_3
        return float(np.abs(fine[self.inner]).mean() / (np.abs(coarse[self.inner]).mean() + 1e-3))

    def vessel_visibility(self) -> float:
        """95th percentile of a 9 px black top-hat of the green channel over the mean green."""
        line = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
        tophat = cv2.morphologyEx(self.green, cv2.MORPH_BLACKHAT, line)
        return float(np.percentile(tophat[self.inner], 95) / (self.mean_green + 8.0))

    def contrast(self) -> float:
        low, high = np.percentile(self.pixels[:, 1], (2, 98))
        return float((high - low) / (self.mean_green + 1.0))


@dataclass(frozen=True)
class Measure:
    """One quality measure: a row of :data:`MEASURES`.

    Its score is 0.5 at ``threshold`` and 1 at ``threshold + span`` (``span`` < 0 when lower is
    better); below 0.5 the photo fails with ``reason`` (whose advice is in
    :data:`REASON_ADVICE`). ``after``: measures that must pass before this one is judged (a
    dark or washed-out photo lacks detail anyway; haze greys the colours).
    """

    name: str
    compute: Callable[[FieldStats], float]
    threshold: float
    span: float
    reason: str
    after: tuple[str, ...] = ()


EXPOSURE = ("brightness", "shaded", "clipped", "washed")

# Thresholds (score 0.5) and spans (score 1 at threshold + span), set on real photographs:
# DRIVE and EyePACS-256 gradable, and the same photos degraded (``bench/quality.py``). The
# order is the learned quality model's feature order: add new rows at the end.
MEASURES: tuple[Measure, ...] = (
    # gradable >= 121; under-exposed x0.12 <= 26
    Measure("brightness", lambda f: f.brightness, 50.0, 40.0, REASON_DARK),
    # gradable <= 0.34 (vignetted rims); an eyelid over half: >= 0.37
    Measure(
        "shaded",
        lambda f: float(np.mean(f.brightest < 0.35 * float(np.percentile(f.brightest, 90)))),
        0.36,
        -0.10,
        REASON_DARK,
    ),
    # gradable <= 0.03; over-exposed x3: median 0.40
    Measure("clipped", lambda f: float(np.mean(f.darkest >= 250)), 0.10, -0.07, REASON_OVEREXPOSED),
    # gradable <= 158; synthetic over-exposed >= 191
    Measure(
        "washed", lambda f: float(np.percentile(f.pixels[:, 1], 25)), 175.0, -15.0,
        REASON_OVEREXPOSED,
    ),
    # gradable >= 0.067 (enhanced EyePACS); a grey moon 0.0
    Measure(
        "colour",
        lambda f: float(np.mean(f.pixels.max(axis=1) - f.darkest) / (f.brightness + 1.0)),
        0.04,
        0.02,
        REASON_NO_DISC,
        after=("contrast",),
    ),
    # gradable >= 0.36; 75 % haze on raw photos: <= 0.13
    Measure("contrast", FieldStats.contrast, 0.20, 0.15, REASON_LOW_CONTRAST, after=EXPOSURE),
    # gradable >= 0.50; defocus of 2 % of the diameter: <= 0.43
    Measure("sharpness", FieldStats.detail_ratio, 0.47, 0.15, REASON_BLURRED, after=EXPOSURE),
    # gradable >= 0.059; featureless discs ~0.01
    Measure("vessels", FieldStats.vessel_visibility, 0.045, 0.03, REASON_BLURRED, after=EXPOSURE),
)  # fmt: skip
QUALITY_THRESHOLDS: dict[str, tuple[float, float]] = {
    m.name: (m.threshold, m.span) for m in MEASURES
}
REASON_OF_MEASURE = {m.name: m.reason for m in MEASURES}


def measures_of(crop: np.ndarray, inner: np.ndarray) -> dict[str, float]:
    """Every measure of :data:`MEASURES` on a working crop and its field mask."""
    stats = FieldStats(crop, inner)
    return {m.name: m.compute(stats) for m in MEASURES}


def judged_scores(measures: dict[str, float]) -> dict[str, float]:
    """The score of each measure that is judged: those whose ``after`` measures all pass."""
    scores: dict[str, float] = {}
    changed = True
    while changed:
        changed = False
        for m in MEASURES:
            if m.name in scores or not all(scores.get(a, 0.0) >= 0.5 for a in m.after):
                continue
            scores[m.name] = ramp(measures[m.name], m.threshold, m.span)
            changed = True
    return scores


def failing_reasons(scores: dict[str, float]) -> set[str]:
    """The reasons of the judged measures that score under 0.5."""
    reason = {m.name: m.reason for m in MEASURES}
    return {reason[name] for name, score in scores.items() if score < 0.5}
