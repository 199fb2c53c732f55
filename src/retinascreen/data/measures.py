"""What a quality verdict is made of: the measures, their thresholds and their reasons.

:func:`quality_measures` measures a photo's field at a fixed working scale;
:data:`QUALITY_THRESHOLDS` says where each measure turns from gradable to not, and
:data:`REASON_OF_MEASURE` / :data:`REASON_ADVICE` what a failing measure means and what the
photographer can do. The verdict itself is :func:`retinascreen.data.quality.assess_quality`.
"""

from __future__ import annotations

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


def measures_of(crop: np.ndarray, inner: np.ndarray) -> dict[str, float]:
    green = crop[:, :, 1].astype(np.float32)
    pixels = crop[inner].astype(np.float32)  # (N, 3) RGB inside the field
    brightest = np.maximum(pixels[:, 0], pixels[:, 1])
    brightness = float(brightest.mean())
    bright_level = float(np.percentile(brightest, 90))
    darkest, most = pixels.min(axis=1), pixels.max(axis=1)
    field_green = pixels[:, 1]
    mean_green = float(field_green.mean())
    low, high = np.percentile(field_green, (2, 98))
    blur_1, blur_2, blur_3 = (cv2.GaussianBlur(green, (0, 0), sigma) for sigma in (0.8, 1.6, 3.2))
    fine, coarse = blur_1 - blur_2, blur_2 - blur_3
    line = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))
    tophat = cv2.morphologyEx(green, cv2.MORPH_BLACKHAT, line)
    return {
        "brightness": brightness,
        "shaded": float(np.mean(brightest < 0.35 * bright_level)),
        "clipped": float(np.mean(darkest >= 250)),
        "washed": float(np.percentile(field_green, 25)),
        "colour": float(np.mean(most - darkest) / (brightness + 1.0)),
        "contrast": float((high - low) / (mean_green + 1.0)),
        "sharpness": float(np.abs(fine[inner]).mean() / (np.abs(coarse[inner]).mean() + 1e-3)),
        "vessels": float(np.percentile(tophat[inner], 95) / (mean_green + 8.0)),
    }


# Thresholds (score 0.5) and spans (score 1 at threshold + span), set on real photographs:
# DRIVE and EyePACS-256 gradable, and the same photos degraded (``bench/quality.py``).
QUALITY_THRESHOLDS: dict[str, tuple[float, float]] = {
    "brightness": (50.0, 40.0),  # gradable >= 121; under-exposed x0.12 <= 26
    "shaded": (0.36, -0.10),  # gradable <= 0.34 (vignetted rims); an eyelid over half: >= 0.37
    "clipped": (0.10, -0.07),  # gradable <= 0.03; over-exposed x3: median 0.40
    "washed": (175.0, -15.0),  # gradable <= 158; synthetic over-exposed >= 191
    "colour": (0.04, 0.02),  # gradable >= 0.067 (enhanced EyePACS); a grey moon 0.0
    "contrast": (0.20, 0.15),  # gradable >= 0.36; 75 % haze on raw photos: <= 0.13
    "sharpness": (0.47, 0.15),  # gradable >= 0.50; defocus of 2 % of the diameter: <= 0.43
    "vessels": (0.045, 0.03),  # gradable >= 0.059; featureless discs ~0.01
}
REASON_OF_MEASURE = {
    "brightness": REASON_DARK,
    "shaded": REASON_DARK,
    "clipped": REASON_OVEREXPOSED,
    "washed": REASON_OVEREXPOSED,
    "colour": REASON_NO_DISC,
    "contrast": REASON_LOW_CONTRAST,
    "sharpness": REASON_BLURRED,
    "vessels": REASON_BLURRED,
}
