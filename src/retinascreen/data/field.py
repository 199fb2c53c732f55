"""The circular fundus field of view: :class:`Disc` and :func:`find_disc`.

A fundus photograph is a bright, roughly circular, reddish-orange field on a dark background,
often clipped at the top and bottom (as on many EyePACS photos). :func:`find_disc` finds that
circle at a small working resolution. Cropping to it is :mod:`retinascreen.data.crop`; judging
the photo's quality, :mod:`retinascreen.data.quality`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Disc detection runs on the image shrunk to this many pixels on its longest side.
FIND_SIZE = 256
# The field is what stands out from the backdrop by this share of the contrast between them.
_THRESHOLD_SHARE = 0.12
# The bright region must match its fitted circle this well (intersection over union).
_MIN_IOU = 0.80
# ... or at least this well when the fit is the best of the three thresholds.
_FALLBACK_IOU = 0.45
# Fits within this IoU of the best count as equally good (the lower threshold wins).
_IOU_TIE = 0.03


@dataclass(frozen=True)
class Disc:
    """The fundus field of view: centre and radius in pixels of the original photo."""

    cx: float
    cy: float
    radius: float


def find_disc(rgb: np.ndarray) -> Disc | None:
    """Find the circular fundus field of view, or ``None`` when the photo shows none.

    Works at ~256 px on how far each pixel's colour is from the backdrop's (the colour of the
    corners: black, grey or white). The field is the largest region standing out from it; a
    circle is fitted to that region's boundary *away from the image border* (so a field
    clipped at the top and bottom, or touching all four edges, still gets its true radius).
    Three thresholds are tried in turn: just above the backdrop (keeps a dim, vignetted rim),
    halfway to Otsu's level, and Otsu's level (ignores the speckle that enhanced sets amplify
    in the border). The lowest whose region fills its circle well (intersection over union
    >= 0.80) and nearly as well as the best wins (a speckled border fits worse); failing that,
    a region that lies inside its circle and covers >= 40 % of it (an eyelid shading part of
    the field), or else the best fit if its IoU is >= 0.45 (a field cut by the frame), or else
    a strip of the field cut straight on three or four sides. The region must cover a good part
    of the frame, and the backdrop outside the circle must be even (a portrait, a document, a
    screenshot or noise is not). Burned-in text and timestamps are thin strokes, removed first
    by a small opening; a field clipped on all four sides, with only slivers of backdrop left in
    the corners, is judged on those slivers.
    """
    rgb = as_rgb(rgb)
    step = max(1, max(rgb.shape[:2]) // FIND_SIZE)
    small = shrink(rgb, step)
    h, w = small.shape[:2]
    if min(h, w) < 16:
        return None
    # Burned-in text, timestamps and marks are thin strokes: a small opening removes them.
    small = cv2.morphologyEx(small, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    backdrop = _backdrop_colour(small)
    if backdrop is None:
        return None  # no even border around a field of view: not a fundus photograph
    difference = np.abs(small.astype(np.int16) - backdrop.astype(np.int16)).max(axis=2)
    intensity = cv2.GaussianBlur(
        difference.astype(np.uint8), (0, 0), sigmaX=max(1.0, max(h, w) / 170)
    )
    background, foreground = np.percentile(intensity, (2, 90))
    # A field clipped on four sides leaves the backdrop only in the corners (< 2 % of it).
    background = min(background, _corner_level(intensity))
    if foreground - background < 8 or background > 60:
        return None  # a flat image, or one whose border is not even
    low = background + max(5.0, _THRESHOLD_SHARE * (foreground - background))
    otsu, _ = cv2.threshold(intensity, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    tries = [_circle_at(intensity, t) for t in (low, (low + otsu) / 2, max(low, float(otsu)))]
    fits = [(fit, iou, partial) for fit, iou, partial in tries if fit is not None]
    best_iou = max((iou for _, iou, _ in fits), default=0.0)
    best = next((fit for fit, iou, _ in fits if iou == best_iou), None)
    # The lowest threshold whose circle fits (nearly) as well as the best one: a low threshold
    # keeps a dim rim, but on a speckled border it takes in the speckle and fits it worse.
    found = next(
        (fit for fit, iou, _ in fits if iou >= _MIN_IOU and iou >= best_iou - _IOU_TIE), None
    )
    if found is None:
        # A field partly in shadow, unless a threshold finds it whole.
        found = next((fit for fit, _, partial in fits if partial), None)
    if found is None and best_iou >= _FALLBACK_IOU:
        # A field cut by the frame or darkened in places (common in screening archives): the
        # circle is still the field's, and the quality verdict says what is wrong with it.
        found = best
    if found is None or not _outside_is_backdrop(intensity, *found):
        found = _cut_field(intensity, low)
        if found is None or not _outside_is_backdrop(intensity, *found):
            return None
    cx, cy, radius = found
    return Disc((cx + 0.5) * step - 0.5, (cy + 0.5) * step - 0.5, radius * step)


def disc_mask(h: int, w: int, cx: float, cy: float, radius: float) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (round(cx * 16), round(cy * 16)), round(radius * 16), 1, -1, shift=4)
    return mask.astype(bool)


def _circle_at(
    intensity: np.ndarray, threshold: float
) -> tuple[tuple[float, float, float] | None, float, bool]:
    """(circle, IoU, partial): the circle fitted to the largest region above ``threshold``.

    ``partial``: the region lies within the circle and covers >= 40 % of it (a shaded field).
    """
    none: tuple[tuple[float, float, float] | None, float, bool] = (None, 0.0, False)
    h, w = intensity.shape
    mask: np.ndarray = (intensity > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return none
    outline = max(contours, key=cv2.contourArea)
    region = np.zeros((h, w), np.uint8)
    cv2.drawContours(region, [outline], -1, 1, thickness=-1)
    if region.sum() < 0.10 * h * w:
        return none
    points = outline[:, 0, :].astype(np.float64)
    # Cameras and pre-processing clip the field with straight cuts, at the frame's border or
    # inside it: points on the region's bounding box are not on its circle.
    x0, y0, bw, bh = cv2.boundingRect(outline)
    left, top = max(1, x0 + 1), max(1, y0 + 1)
    right, bottom = min(w - 2, x0 + bw - 2), min(h - 2, y0 + bh - 2)
    inside = (
        (points[:, 0] > left)
        & (points[:, 0] < right)
        & (points[:, 1] > top)
        & (points[:, 1] < bottom)
    )
    fit = _fit_circle(points[inside])
    if fit is None:
        return none
    cx, cy, radius = fit
    if not (0.15 * min(h, w) <= radius <= 0.8 * max(h, w)):
        return none
    if not (-0.25 * w <= cx <= 1.25 * w and -0.25 * h <= cy <= 1.25 * h):
        return none
    circle = disc_mask(h, w, cx, cy, radius)
    clipped = np.zeros_like(circle)
    clipped[y0 : y0 + bh, x0 : x0 + bw] = True
    circle &= clipped
    frame_circle = np.count_nonzero(circle)
    region_b = region.astype(bool)
    overlap = np.count_nonzero(region_b & circle)
    union = np.count_nonzero(region_b | circle)
    iou = overlap / union if union else 0.0
    partial = overlap >= 0.9 * np.count_nonzero(region_b) and overlap >= 0.4 * frame_circle
    return (cx, cy, radius), iou, bool(partial)


def _cut_field(intensity: np.ndarray, threshold: float) -> tuple[float, float, float] | None:
    """The circle around a field cut to a rectangle (a strip of the fundus, frame-high or wide).

    Some archive photos keep only a band of the field, cut straight on three or four sides,
    with too little of the circle left to fit. The band fills its bounding box and runs the
    frame's full height or width; the circle returned is the one through its corners.
    """
    h, w = intensity.shape
    mask = (intensity > threshold).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    x0, y0, bw, bh = cv2.boundingRect(outline)
    if not (bh >= 0.95 * h or bw >= 0.95 * w) or min(bw, bh) < 0.4 * max(h, w):
        return None
    if cv2.contourArea(outline) < 0.85 * bw * bh:
        return None
    return x0 + bw / 2 - 0.5, y0 + bh / 2 - 0.5, float(np.hypot(bw, bh) / 2)


def _outside_is_backdrop(intensity: np.ndarray, cx: float, cy: float, radius: float) -> bool:
    h, w = intensity.shape
    around = ~disc_mask(h, w, cx, cy, 1.06 * radius + 2)
    if np.count_nonzero(around) <= 0.02 * h * w:
        return True
    outside_level = float(np.percentile(intensity[around], 75))
    inside_level = float(np.median(intensity[disc_mask(h, w, cx, cy, radius)]))
    return outside_level <= max(8.0, 0.5 * inside_level)


def _backdrop_colour(small: np.ndarray) -> np.ndarray | None:
    """The colour around the field of view, from the four corners; None if they are not even.

    Every layout of a fundus photograph leaves its corners outside the circular field (raw
    frames, frames clipped at the top and bottom, crops whose circle touches all four edges),
    whatever the backdrop's colour (black, or grey and white in some pre-processed sets). The
    median of the four corner colours tolerates one corner that is not backdrop.
    """
    colour = _backdrop_in_corners(small, max(2, min(small.shape[:2]) // 25))
    if colour is None:
        # A field clipped on four sides leaves only slivers of backdrop in the corners.
        colour = _backdrop_in_corners(small, max(2, min(small.shape[:2]) // 80))
    return colour


def _backdrop_in_corners(small: np.ndarray, k: int) -> np.ndarray | None:
    """:func:`_backdrop_colour` from ``k`` x ``k`` corner patches."""
    corners = [small[:k, :k], small[:k, -k:], small[-k:, :k], small[-k:, -k:]]
    medians = np.array([np.median(c.reshape(-1, 3), axis=0) for c in corners])
    colour = np.median(medians, axis=0)
    spreads = sorted(_unevenness(c, colour) for c in corners)
    agreeing = np.abs(medians - colour).max(axis=1) <= 20
    if agreeing.sum() >= 3 and spreads[2] <= 20:
        return colour.astype(np.uint8)
    # A field pushed against one side covers two corners: the other two, if dark, are the
    # backdrop.
    order = np.argsort(medians.max(axis=1))
    darkest = medians[order[:2]]
    even = max(_unevenness(corners[i], medians[i]) for i in order[:2])
    if darkest.max() <= 30 and np.abs(darkest[0] - darkest[1]).max() <= 15 and even <= 12:
        return darkest.mean(axis=0).astype(np.uint8)
    return None


def _corner_level(intensity: np.ndarray) -> float:
    """The median of the four corner patches' median levels (the backdrop's level)."""
    h, w = intensity.shape
    k = max(2, min(h, w) // 80)
    corners = [intensity[:k, :k], intensity[:k, -k:], intensity[-k:, :k], intensity[-k:, -k:]]
    return float(np.median([np.median(c) for c in corners]))


def _unevenness(patch: np.ndarray, colour: np.ndarray) -> float:
    """Mean largest-channel distance of a patch's pixels from ``colour``."""
    return float(np.abs(patch.reshape(-1, 3) - colour).max(axis=1).mean())


def shrink(rgb: np.ndarray, step: int) -> np.ndarray:
    """Area-average by an integer factor (OpenCV's fast path), trimming a few edge pixels."""
    if step <= 1:
        return rgb
    h, w = (rgb.shape[0] // step) * step, (rgb.shape[1] // step) * step
    return cv2.resize(rgb[:h, :w], (w // step, h // step), interpolation=cv2.INTER_AREA)


def _fit_circle(points: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares circle through boundary points, refitted without outliers (notches)."""
    if len(points) < 20:
        return None
    angles_ok = _spans_enough(points)
    if not angles_ok:
        return None
    for _ in range(3):
        x, y = points[:, 0], points[:, 1]
        design = np.column_stack([x, y, np.ones_like(x)])
        target = x * x + y * y
        try:
            (a, b, c), *_ = np.linalg.lstsq(design, target, rcond=None)
        except np.linalg.LinAlgError:
            return None
        cx, cy = a / 2, b / 2
        r2 = c + cx * cx + cy * cy
        if r2 <= 0:
            return None
        radius = float(np.sqrt(r2))
        residual = np.abs(np.hypot(x - cx, y - cy) - radius)
        keep = residual <= max(2.0, 2.5 * float(np.median(residual)))
        if keep.all() or keep.sum() < 20:
            break
        points = points[keep]
    return float(cx), float(cy), radius


def _spans_enough(points: np.ndarray) -> bool:
    """Boundary points must spread around the centre, not hug one straight edge."""
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    occupied = np.unique(((angles + np.pi) / (2 * np.pi) * 12).astype(int) % 12)
    return len(occupied) >= 4


def as_rgb(rgb: np.ndarray) -> np.ndarray:
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape (H, W, 3), got {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)
