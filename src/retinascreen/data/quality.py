"""Is a photo a gradable fundus photograph? :func:`assess_quality`.

The measured reasons (:mod:`retinascreen.data.measures`), the learned score of
:mod:`retinascreen.data.quality_model`, and the refusal of what is not a photograph of the
retina.
"""

from __future__ import annotations

import cv2
import numpy as np

from retinascreen.data.crop import circle_mask
from retinascreen.data.field import FIND_SIZE, Disc, as_rgb, find_disc, shrink
from retinascreen.data.measures import (
    EXPOSURE,
    QUALITY_SIZE,
    QUALITY_THRESHOLDS,
    REASON_BLURRED,
    REASON_DARK,
    REASON_LEARNED,
    REASON_LOW_CONTRAST,
    REASON_NO_DISC,
    REASON_OVEREXPOSED,
    failing_reasons,
    field_crop,
    judged_scores,
    measures_of,
    ramp,
)
from retinascreen.data.quality_model import bundled_model, feature_vector
from retinascreen.result import Quality


def assess_quality(rgb: np.ndarray, *, disc: Disc | None = None) -> Quality:
    """Is this photo a gradable fundus photograph? ``reasons`` say why not.

    Each measure gets a score (0.5 at its threshold in ``QUALITY_THRESHOLDS``), and so does the
    bundled learned model (``learned``: 0.5 at its P(reject) threshold); the photo's score is
    the worst of them, so it is >= 0.5 exactly when the photo is gradable. The learned score
    gives its own reason only where no measure fails (the measures' reasons are the ones a
    photographer can act on). ``label`` is EyeQ's scale: reject, or good / usable as the model
    finds likelier. A round thing that is not a retina (:func:`_looks_like_retina`) gets
    "no fundus disc found". Contrast,
    sharpness and vessels are judged only when the exposure is right (a dark or washed-out
    photo lacks them anyway, and its exposure is what the photographer must fix first), and
    colour only when the contrast is right (a veil of haze greys the colours too).
    ``measures`` keeps the measured values, so a user can see why.
    """
    rgb = as_rgb(rgb)
    disc = disc or find_disc(rgb)
    field = field_crop(rgb, disc) if disc is not None else None
    if disc is None or field is None:
        missing = [REASON_NO_DISC]
        step = max(1, max(rgb.shape[:2]) // FIND_SIZE)
        small = shrink(rgb, step)
        if np.percentile(np.maximum(small[:, :, 0], small[:, :, 1]), 99) < 50:
            missing.append(REASON_DARK)  # maybe a fundus, but far too dark to see it
        return Quality(False, 0.0, tuple(missing), label="reject")
    measures = measures_of(*field)
    if not _looks_like_retina(*field, measures):
        rounded = {name: round(value, 4) for name, value in measures.items()}
        return Quality(False, 0.0, (REASON_NO_DISC,), rounded, label="reject")
    scores = judged_scores(measures)
    failing = failing_reasons(scores)
    rounded = {name: round(value, 4) for name, value in measures.items()}
    usable_share = 0.0
    model = bundled_model()
    if model is not None and REASON_NO_DISC not in failing:
        vector = feature_vector(measures, *field, model.extractor)
        probabilities = model.probabilities(vector)
        p_good, p_usable = probabilities[:2]
        p_reject = model.reject_probability(vector, probabilities)
        cut = model.reject_threshold
        learned = (
            0.5 + 0.5 * (cut - p_reject) / cut
            if p_reject < cut
            else 0.5 * (1 - p_reject) / (1 - cut)
        )
        scores["learned"] = float(learned)
        rounded["learned"] = round(float(learned), 4)
        usable_share = float(p_usable / (p_good + p_usable + 1e-9))
        if learned < 0.5 and not failing:
            failing.add(REASON_LEARNED)  # no single measure explains it
    reasons = tuple(r for r in _REASON_ORDER if r in failing)
    label = "reject" if reasons else ("usable" if usable_share > 0.5 else "good")
    return Quality(not reasons, min(scores.values()), reasons, rounded, label=label)


def _looks_like_retina(crop: np.ndarray, inner: np.ndarray, measures: dict[str, float]) -> bool:
    """False for round things that are not a retina, though they stand out from a dark backdrop.

    - the front of an eye (an external-eye or anterior-segment photo, a dark room, a flash): a
      dark pupil in the field's centre, ringed all round by a far brighter iris and sclera (a
      fundus's dark macula is a shade darker than its surroundings; a shadow covers one side);
    - a surface without a single dark line (drawings, a slit-lamp beam): every photograph of
      the retina, even a blurred one, shows some vessel or texture (``vessels`` > 0.004);
    - a smooth shaded object (a ball, a lamp): noise but no coarse structure at all
      (``sharpness`` > 1.2 with hardly any vessels), where a defocused retina keeps its disc,
      macula and blurred vessels;
    - a picture whose field is mostly bluer or greener than red (sky, screens): < 20 % of the
      field red-dominant, where the most colour-enhanced fundus is above 30 %.
    """
    lum = np.maximum(crop[:, :, 0], crop[:, :, 1]).astype(np.float32)
    centre = circle_mask(QUALITY_SIZE, 0.3) & inner
    if np.count_nonzero(centre) > 100:
        centre_level = float(lum[centre].mean())
        yy, xx = np.mgrid[:QUALITY_SIZE, :QUALITY_SIZE]
        half = (QUALITY_SIZE - 1) / 2
        angle = np.arctan2(yy - half, xx - half)
        ring = circle_mask(QUALITY_SIZE, 0.75) & ~circle_mask(QUALITY_SIZE, 0.4) & inner
        sectors = [lum[ring & (np.floor((angle + np.pi) / (np.pi / 4)) == k)] for k in range(8)]
        levels = [float(s.mean()) for s in sectors if s.size > 20]
        if len(levels) == 8 and min(levels) >= 1.6 * centre_level + 10:
            # A dark centre ringed by brighter all round: a pupil if its rim is sharp or the
            # field is dim (a dark room); a fundus's dark macula fades out softly in a bright
            # field.
            dim = float(lum[inner].mean()) < 100
            if dim or _dark_centre_rim(lum, inner, centre, ring) >= 0.12:
                return False
    exposed = all(ramp(measures[name], *QUALITY_THRESHOLDS[name]) >= 0.5 for name in EXPOSURE)
    if exposed and measures["vessels"] <= 0.004:  # (a dark or washed-out photo hides them)
        return False
    if exposed and measures["sharpness"] > 1.2 and measures["vessels"] < 0.03:
        return False
    pixels = crop[inner].astype(np.int16)
    red = np.mean(pixels[:, 0] >= np.maximum(pixels[:, 1], pixels[:, 2]) - 5)
    return bool(red >= 0.2)


def _dark_centre_rim(
    lum: np.ndarray, inner: np.ndarray, centre: np.ndarray, ring: np.ndarray
) -> float:
    """How sharp the rim of the dark blob in the field's centre is: the median brightness
    gradient along it (per pixel at 256 px) over the contrast between the blob and its ring."""
    lum = cv2.GaussianBlur(lum, (0, 0), 1.0)
    low, high = float(np.median(lum[centre])), float(np.median(lum[ring]))
    mask = ((lum < (low + high) / 2) & inner).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask)
    in_centre = labels[centre & (mask > 0)]
    if in_centre.size == 0 or np.bincount(in_centre).argmax() == 0:
        return 0.0
    blob = (labels == np.bincount(in_centre).argmax()).astype(np.uint8)
    rim = cv2.morphologyEx(blob, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)).astype(bool)
    rim &= inner
    if not rim.any():
        return 0.0
    gy, gx = np.gradient(lum)
    return float(np.median(np.hypot(gx, gy)[rim])) / (high - low + 1.0)


_REASON_ORDER = (
    REASON_NO_DISC,
    REASON_DARK,
    REASON_OVEREXPOSED,
    REASON_BLURRED,
    REASON_LOW_CONTRAST,
    REASON_LEARNED,
)
