"""Optic disc, fovea and laterality from a disc probability map and the fundus crop (pure maths).

- :func:`disc_from_map`: the optic disc as the connected region of a probability map with the
  most probability mass (capped at a typical disc's area) weighted by how disc-like it is
  (round, where the large vessels converge): its centre, equivalent diameter, outline and a
  confidence;
- :func:`find_fovea`: the fovea from the anatomy (no fovea labels exist in our data): about
  2.5 disc diameters temporal to the disc centre and a little below it, at the darkest
  vessel-free spot of a search window (dark vessels are removed by a morphological closing
  before looking for the dark macula). Temporal is unknown before laterality, so both sides are
  searched; the side whose window lies in the field and holds the darker, more contrasted spot
  wins, helped by the side towards the field's centre and held back when the expected
  position lies within 1 DD of the field's rim (there, dark means vignetting);
- :func:`laterality_of`: a right eye's disc lies to the right of its fovea in a standard
  (non-mirrored) fundus photograph, a left eye's to the left;
- :func:`crop_to_photo`: crop pixels back to the input photo's pixels (the inverse of the
  square :func:`~retinascreen.data.fundus.crop_fundus` cuts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from retinascreen.data.fundus import CropBox

__all__ = [
    "FOVEA_OFFSET_DD",
    "DiscFit",
    "FoveaFit",
    "crop_to_photo",
    "disc_from_map",
    "disc_side",
    "find_fovea",
    "laterality_of",
    "photo_scale",
    "photo_to_crop",
]

# Fovea relative to the disc centre, in disc diameters: temporal (along x) and inferior (+y).
FOVEA_OFFSET_DD = (2.5, 0.3)
# The search window around the expected fovea (radius, disc diameters).
_WINDOW_DD = 1.0
# Plausible disc diameters as a share of the field diameter (45-50 degree photos: ~0.12-0.14).
_DISC_SHARE = (0.06, 0.25)
# A typical disc's radius over the field's radius (its diameter is ~0.14 field diameters).
_TYPICAL_SHARE = 0.14
# How much the side towards the field's centre counts, in units of macular contrast.
_PRIOR_WEIGHT = 0.05
# How much an expected fovea position within 1 DD of the field's rim counts against that side.
_RIM_WEIGHT = 0.1


@dataclass(frozen=True)
class DiscFit:
    """The optic disc in crop pixels: centre, equivalent diameter, outline (N, 2) x/y, 0..1."""

    cx: float
    cy: float
    diameter: float
    outline: np.ndarray
    confidence: float


@dataclass(frozen=True)
class FoveaFit:
    """The fovea in crop pixels with a 0..1 confidence, and the side it lies on from the disc
    (``+1``: to the right of the disc in the image, ``-1``: to the left)."""

    x: float
    y: float
    confidence: float
    side: int


def disc_from_map(
    prob: np.ndarray, field: np.ndarray, threshold: float = 0.5, view: np.ndarray | None = None
) -> DiscFit | None:
    """The disc region of a (S, S) probability map, or None when no disc shows.

    Each connected region at ``threshold`` is scored by its probability mass (capped at a
    typical disc's area, so a large bright artefact does not win by size alone) times how
    disc-like it is (:func:`_disc_likeness`: round, and, given the crop ``view``, where the
    large vessels converge; a crescent of stray light at the field's rim or a patch of
    exudates is neither). Where no pixel reaches ``threshold`` but half of it, regions at half
    the map's peak are used; where the map is blank and ``view`` is given, the brightest spot
    where vessels converge (:func:`_disc_from_view`), with a low confidence. Confidence = the
    region's mean probability, lowered when its diameter is implausible for the field (a
    fraction ``_DISC_SHARE`` of the field's diameter), when it is not disc-like, or when a
    second region scores comparably.
    """
    prob = np.where(field, np.asarray(prob, np.float32), 0.0)
    peak = float(prob.max()) if prob.size else 0.0
    radius = math.sqrt(max(1, int(np.count_nonzero(field))) / math.pi)
    vessels = None if view is None else _vessel_share(view, field, radius)
    if peak < 0.5 * threshold:
        return (
            None
            if view is None or vessels is None
            else _disc_from_view(view, field, vessels, radius)
        )
    level = threshold if peak >= threshold else 0.5 * peak
    mask = (prob >= level).astype(np.uint8)
    n, labels, _, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return None
    typical_area = math.pi * (_TYPICAL_SHARE * radius) ** 2
    scores, likeness = [], []
    for k in range(1, n):
        region = labels == k
        like = _disc_likeness(region, vessels)
        likeness.append(like)
        scores.append(min(float(prob[region].sum()), typical_area) * like)
    order = np.argsort(scores)[::-1]
    best = int(order[0]) + 1
    region = labels == best
    weights = prob * region
    yy, xx = np.nonzero(region)
    w = weights[yy, xx]
    cx, cy = float((xx * w).sum() / w.sum()), float((yy * w).sum() / w.sum())
    area = float(np.count_nonzero(region))
    diameter = 2.0 * math.sqrt(area / math.pi)
    share = diameter / (2.0 * radius)
    plausible = 1.0 if _DISC_SHARE[0] <= share <= _DISC_SHARE[1] else 0.3
    top = scores[order[0]]
    clear = 1.0 if n <= 2 or top <= 0 else float(np.clip(1.5 - scores[order[1]] / top, 0.3, 1.0))
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    outline = max(contours, key=cv2.contourArea)[:, 0, :].astype(np.float32)
    strength = float(np.clip(w.mean(), 0.0, 1.0)) * min(1.0, peak / threshold)
    confidence = strength * plausible * clear * min(1.0, 2 * likeness[best - 1])
    return DiscFit(cx, cy, diameter, outline, round(confidence, 3))


def _vessel_share(view: np.ndarray, field: np.ndarray, radius: float) -> np.ndarray:
    """Share of dark thin structures (vessels: black-hat of the green channel, the top 12 %
    of the field) within ~1 disc diameter of each pixel, (S, S) float32."""
    green = view[:, :, 1].astype(np.float32) if view.ndim == 3 else view.astype(np.float32)
    k = max(3, int(round(radius * 0.07)) | 1)
    hat = cv2.morphologyEx(
        green, cv2.MORPH_BLACKHAT, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    inner = cv2.erode(field.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    if not inner.any():
        return np.zeros(field.shape, np.float32)
    vessels = ((hat >= np.percentile(hat[inner], 88)) & inner).astype(np.float32)
    r = max(1, int(round(_TYPICAL_SHARE * radius * 2)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)).astype(np.float32)
    kernel /= kernel.sum()
    return np.asarray(cv2.filter2D(vessels, -1, kernel, borderType=cv2.BORDER_CONSTANT), np.float32)


def _disc_likeness(region: np.ndarray, vessels: np.ndarray | None) -> float:
    """0..1: how round a region is (4 pi area / perimeter^2, full marks from 0.7) times, given
    the vessel share map, how densely vessels surround it (full marks from 0.2, the share
    around a typical disc, where the retina's large vessels converge)."""
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    area = float(np.count_nonzero(region))
    perimeter = sum(cv2.arcLength(c, True) for c in contours)
    circularity = 4 * math.pi * area / max(1.0, perimeter) ** 2
    like = float(np.clip((circularity - 0.3) / 0.4, 0.1, 1.0))
    if vessels is not None:
        ys, xs = np.nonzero(region)
        share = float(vessels[int(round(ys.mean())), int(round(xs.mean()))])
        like *= float(np.clip(share / 0.2, 0.1, 1.0))
    return like


def _disc_from_view(
    view: np.ndarray, field: np.ndarray, vessels: np.ndarray, radius: float
) -> DiscFit | None:
    """The disc where the model sees none: the brightest disc-sized spot where vessels
    converge (the classic cue), with a typical diameter and a confidence of at most 0.3."""
    lum = view[:, :, 0].astype(np.float32) * 0.5 + view[:, :, 1].astype(np.float32) * 0.5
    inner = cv2.erode(field.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    if not inner.any():
        return None
    r = _TYPICAL_SHARE * radius
    bright = cv2.GaussianBlur(np.where(inner, lum, 0), (0, 0), r) / np.maximum(
        cv2.GaussianBlur(inner.astype(np.float32), (0, 0), r), 1e-3
    )
    base = float(np.median(bright[inner]))
    score = np.where(inner, (bright / max(1.0, base)) * np.clip(vessels / 0.2, 0.0, 1.0), 0.0)
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    lift = float(bright[iy, ix]) / max(1.0, base) - 1.0
    if lift <= 0.05:
        return None
    t = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    outline = np.stack([ix + r * np.cos(t), iy + r * np.sin(t)], 1).astype(np.float32)
    confidence = float(np.clip(lift, 0.0, 0.3)) * float(np.clip(vessels[iy, ix] / 0.2, 0.0, 1.0))
    return DiscFit(float(ix), float(iy), 2 * r, outline, round(confidence, 3))


def _darkness(view: np.ndarray, field: np.ndarray, dd: float) -> np.ndarray:
    """Smoothed, vessel-free brightness of the crop relative to its surroundings (~1), the
    field's median outside the field."""
    green = view[:, :, 1].astype(np.float32) if view.ndim == 3 else view.astype(np.float32)
    red = view[:, :, 0].astype(np.float32) if view.ndim == 3 else green
    lum = 0.75 * green + 0.25 * red
    inside = lum[field]
    median = float(np.median(inside)) if inside.size else 0.0
    lum = np.where(field, lum, median)
    k = max(3, int(round(dd * 0.3)) | 1)
    closed = cv2.morphologyEx(
        lum, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    )
    smooth = cv2.GaussianBlur(closed, (0, 0), max(1.0, dd * 0.15))
    # Divide out the slow illumination (vignetting darkens the rim more than the macula).
    # (blurred over the field only, so the black surround does not darken the rim)
    inside_f = field.astype(np.float32)
    sigma = max(2.0, dd * 2.0)
    background = cv2.GaussianBlur(closed * inside_f, (0, 0), sigma) / np.maximum(
        cv2.GaussianBlur(inside_f, (0, 0), sigma), 1e-3
    )
    return smooth / np.maximum(background, 0.2 * max(1.0, median))


def find_fovea(view: np.ndarray, field: np.ndarray, disc: DiscFit) -> FoveaFit | None:
    """The fovea in the crop ``view`` (S, S, 3) given the disc; None when neither expected
    position lies in the field. See the module docstring for the method."""
    h, w = field.shape
    dd = max(4.0, disc.diameter)
    lum = _darkness(view, field, dd)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    safe = cv2.erode(
        field.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, int(dd * 0.5))
    )
    fy, fx = np.nonzero(field)
    centre_x = float(fx.mean()) if fx.size else w / 2
    centre_y = float(fy.mean()) if fy.size else h / 2
    radius = math.sqrt(max(1, fx.size) / math.pi)
    # Macula-centred photos put the disc off to one side: the fovea lies towards the centre.
    toward = 1 if centre_x >= disc.cx else -1
    pull = float(np.clip(abs(centre_x - disc.cx) / (0.3 * radius), 0.0, 1.0))
    candidates = []
    for side in (1, -1):
        ex = disc.cx + side * FOVEA_OFFSET_DD[0] * dd
        ey = disc.cy + FOVEA_OFFSET_DD[1] * dd
        dist = np.hypot(xx - ex, yy - ey) / dd
        window = (dist <= _WINDOW_DD) & safe.astype(bool)
        if np.count_nonzero(window) < 0.25 * math.pi * (_WINDOW_DD * dd) ** 2:
            continue  # most of the window is outside the field
        # Darkness with a mild pull towards the expected position.
        score = lum + 0.08 * dist**2
        score = np.where(window, score, np.inf)
        iy, ix = np.unravel_index(int(np.argmin(score)), score.shape)
        ring = (np.hypot(xx - ix, yy - iy) / dd >= 0.8) & (np.hypot(xx - ix, yy - iy) / dd <= 1.6)
        ring &= field
        surround = float(np.median(lum[ring])) if np.count_nonzero(ring) else float(lum[iy, ix])
        contrast = (surround - float(lum[iy, ix])) / max(1e-3, surround)
        prior = _PRIOR_WEIGHT * pull * (1 if side == toward else -1)
        # A 45-50 degree field, macula- or disc-centred, holds the fovea at least ~1 DD
        # inside its rim: a dark spot at the rim is vignetting, not the macula.
        inset = (radius - math.hypot(ex - centre_x, ey - centre_y)) / dd
        rim = _RIM_WEIGHT * float(np.clip(1.0 - inset, 0.0, 1.0))
        candidates.append((contrast + prior - rim, float(ix), float(iy), side))
    if not candidates:
        return None
    candidates.sort(reverse=True)
    contrast, x, y, side = candidates[0]
    # Confidence: a dark macula (contrast ~0.15+) and a clear winner over the other side.
    strength = float(np.clip(contrast / 0.15, 0.0, 1.0))
    margin = (
        1.0
        if len(candidates) == 1
        else float(np.clip(0.5 + (contrast - candidates[1][0]) / 0.1, 0.0, 1.0))
    )
    return FoveaFit(x, y, round(strength * (0.5 + 0.5 * margin) * disc.confidence, 3), side)


def disc_side(disc: DiscFit, field: np.ndarray) -> tuple[int, float]:
    """Which side of the field's centre the disc lies on (+1 right, -1 left) and how clearly
    (0..1: its horizontal offset over 0.4 field radii). Macula-centred photos put a right eye's
    disc right of the centre."""
    ys, xs = np.nonzero(field)
    if xs.size == 0:
        return 0, 0.0
    radius = math.sqrt(xs.size / math.pi)
    offset = disc.cx - float(xs.mean())
    return (1 if offset > 0 else -1), float(np.clip(abs(offset) / (0.4 * radius), 0.0, 1.0))


def laterality_of(disc_x: float, fovea_x: float) -> str:
    """``right`` when the disc lies right of the fovea in the image, else ``left``."""
    return "right" if disc_x > fovea_x else "left"


def crop_to_photo(box: CropBox, size: int, x: float, y: float) -> tuple[float, float]:
    """Crop pixel (x, y) of a ``size`` crop of ``box`` -> the input photo's pixel (x, y),
    with :func:`~retinascreen.data.fundus.crop_fundus`'s own rounding of the square."""
    step = max(1, int(2 * box.half // size))
    side = max(step, int(np.ceil(2 * box.half / step)) * step)
    x0, y0 = round(box.cx - side / 2), round(box.cy - side / 2)
    scale = side / size
    return x0 + (x + 0.5) * scale - 0.5, y0 + (y + 0.5) * scale - 0.5


def photo_scale(box: CropBox, size: int) -> float:
    """Photo pixels per crop pixel."""
    step = max(1, int(2 * box.half // size))
    return max(step, int(np.ceil(2 * box.half / step)) * step) / size


def photo_to_crop(box: CropBox, size: int, x: float, y: float) -> tuple[float, float]:
    """Inverse of :func:`crop_to_photo`: the input photo's pixel (x, y) -> crop pixel."""
    step = max(1, int(2 * box.half // size))
    side = max(step, int(np.ceil(2 * box.half / step)) * step)
    x0, y0 = round(box.cx - side / 2), round(box.cy - side / 2)
    scale = side / size
    return (x + 0.5 - x0) / scale - 0.5, (y + 0.5 - y0) / scale - 0.5
