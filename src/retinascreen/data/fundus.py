"""The circular fundus field of view: finding it, cropping to it, and judging photo quality.

A fundus photograph is a bright, roughly circular, reddish-orange field on a dark background,
often clipped at the top and bottom (as on many EyePACS photos). :func:`find_disc` finds that
circle at a small working resolution; :class:`Preprocessing` crops the square around the
visible field (:func:`crop_box`: padded with black where the frame clips it, tightened where
that would leave more black than retina), resizes it and optionally applies Ben Graham's
local-colour normalisation and CLAHE; :func:`assess_quality` gives the gradable / ungradable verdict
(the measured reasons, the learned score of :mod:`retinascreen.data.quality_model`, and the
refusal of what is not a photograph of the retina).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from retinascreen.data.quality_model import bundled_model, feature_vector
from retinascreen.errors import ConfigError
from retinascreen.result import Quality

# Disc detection runs on the image shrunk to this many pixels on its longest side.
_FIND_SIZE = 256
# The field is what stands out from the backdrop by this share of the contrast between them.
_THRESHOLD_SHARE = 0.12
# The bright region must match its fitted circle this well (intersection over union).
_MIN_IOU = 0.80
# ... or at least this well when the fit is the best of the three thresholds.
_FALLBACK_IOU = 0.45
# Fits within this IoU of the best count as equally good (the lower threshold wins).
_IOU_TIE = 0.03
# The crop square is the field's diameter plus this margin on each side.
_CROP_PAD = 0.02
# ... tightened, where the photo clips the field, until the field fills this share of it.
_MIN_FILL = 0.72
# Quality measures run on the disc cropped and resized to this size (size-independent blur).
_QUALITY_SIZE = 256

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


@dataclass(frozen=True)
class Disc:
    """The fundus field of view: centre and radius in pixels of the original photo."""

    cx: float
    cy: float
    radius: float


# --------------------------------------------------------------------------- disc finding


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
    rgb = _as_rgb(rgb)
    step = max(1, max(rgb.shape[:2]) // _FIND_SIZE)
    small = _shrink(rgb, step)
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


def _disc_mask(h: int, w: int, cx: float, cy: float, radius: float) -> np.ndarray:
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
    circle = _disc_mask(h, w, cx, cy, radius)
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
    around = ~_disc_mask(h, w, cx, cy, 1.06 * radius + 2)
    if np.count_nonzero(around) <= 0.02 * h * w:
        return True
    outside_level = float(np.percentile(intensity[around], 75))
    inside_level = float(np.median(intensity[_disc_mask(h, w, cx, cy, radius)]))
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


def _shrink(rgb: np.ndarray, step: int) -> np.ndarray:
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


# --------------------------------------------------------------------------- cropping


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB array of shape (H, W, 3), got {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _whole_frame(rgb: np.ndarray) -> Disc:
    h, w = rgb.shape[:2]
    return Disc(w / 2, h / 2, max(h, w) / 2)


@dataclass(frozen=True)
class CropBox:
    """The square a crop cuts: centre and half its side, in pixels of the original photo."""

    cx: float
    cy: float
    half: float


def _disc_square(disc: Disc, pad: float = _CROP_PAD) -> CropBox:
    return CropBox(disc.cx, disc.cy, disc.radius * (1 + pad))


# The visible field is sampled on this many cells across the disc's diameter.
_FIELD_CELLS = 160


@dataclass(frozen=True)
class _Field:
    """Centres (N, 2) of the grid cells over the disc that lie inside the photo, and a cell's area."""

    points: np.ndarray
    cell_area: float


def _visible_field(shape: tuple[int, ...], disc: Disc) -> _Field:
    h, w = shape[:2]
    grid = (np.arange(_FIELD_CELLS) + 0.5) / _FIELD_CELLS * 2 * disc.radius - disc.radius
    xx, yy = np.meshgrid(disc.cx + grid, disc.cy + grid)
    inside = np.hypot(xx - disc.cx, yy - disc.cy) <= disc.radius
    inside &= (xx >= -0.5) & (xx <= w - 0.5) & (yy >= -0.5) & (yy <= h - 0.5)
    points = np.column_stack([xx[inside], yy[inside]])
    return _Field(points, (2 * disc.radius / _FIELD_CELLS) ** 2)


def _fill_of(field: _Field, box: CropBox) -> float:
    points = field.points
    inside = (np.abs(points[:, 0] - box.cx) <= box.half) & (
        np.abs(points[:, 1] - box.cy) <= box.half
    )
    return float(np.count_nonzero(inside) * field.cell_area / (2 * box.half) ** 2)


def crop_box(shape: tuple[int, ...], disc: Disc, *, pad: float = _CROP_PAD) -> CropBox:
    """The square :func:`crop_fundus` cuts: the visible field's bounding square, tightened.

    A whole disc gets the disc's square plus ``pad`` on each side (the field fills ~73 % of
    it). Where the photo clips the field (pre-cropped sets, fields cut at the top and bottom
    or at one side) the square is centred on the visible part and shrunk until the field fills
    at least ``_MIN_FILL`` of it, never below the visible part's shorter side: the model sees
    retina, not black bands, at the cost of a little periphery.
    """
    return _tightened_box(_visible_field(shape, disc), disc, pad)


def _tightened_box(field: _Field, disc: Disc, pad: float) -> CropBox:
    if len(field.points) == 0:
        return _disc_square(disc, pad)
    (x0, y0), (x1, y1) = field.points.min(axis=0), field.points.max(axis=0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    longest = max(x1 - x0, y1 - y0) / 2 + disc.radius * pad
    shortest = min(x1 - x0, y1 - y0) / 2
    box = CropBox(cx, cy, longest)
    for half in np.linspace(longest, max(shortest, 1.0), 24):
        box = CropBox(cx, cy, float(half))
        if _fill_of(field, box) >= _MIN_FILL:
            break
    return box


def _crop_square(rgb: np.ndarray, box: CropBox, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The square ``box`` (black where it leaves the frame), resized to ``size``.

    Also returns a boolean mask of the output pixels that came from inside the photo. Large
    photos are first area-averaged by an integer factor over the crop only (fast and
    alias-free), so a 2000 px photo costs a few milliseconds.
    """
    h, w = rgb.shape[:2]
    x0, y0, side = square_origin(box, size)
    step = max(1, int(2 * box.half // size))
    # The part of the square inside the photo, aligned to the step grid anchored at (x0, y0).
    ix0 = x0 + max(0, -(-(0 - x0) // step)) * step if x0 < 0 else x0
    iy0 = y0 + max(0, -(-(0 - y0) // step)) * step if y0 < 0 else y0
    ix1 = ix0 + max(0, (min(x0 + side, w) - ix0) // step) * step
    iy1 = iy0 + max(0, (min(y0 + side, h) - iy0) // step) * step
    cells = side // step
    canvas = np.zeros((cells, cells, 3), np.uint8)
    inside = np.zeros((cells, cells), np.uint8)
    if ix1 > ix0 and iy1 > iy0:
        part = _shrink(rgb[iy0:iy1, ix0:ix1], step)
        top, left = (iy0 - y0) // step, (ix0 - x0) // step
        canvas[top : top + part.shape[0], left : left + part.shape[1]] = part
        inside[top : top + part.shape[0], left : left + part.shape[1]] = 1
    method = cv2.INTER_AREA if cells >= size else cv2.INTER_LINEAR
    crop = cv2.resize(canvas, (size, size), interpolation=method)
    valid = cv2.resize(inside, (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
    return crop, valid


def square_origin(box: CropBox, size: int) -> tuple[int, int, int]:
    """(left, top, side) in photo pixels of the square a crop of ``box`` at ``size`` covers.

    Output pixel ``u`` of the crop is centred on photo x = left + (u + 0.5) * side / size - 0.5.
    """
    step = max(1, int(2 * box.half // size))
    side = max(step, int(np.ceil(2 * box.half / step)) * step)
    return round(box.cx - side / 2), round(box.cy - side / 2), side


def crop_fill(rgb: np.ndarray, disc: Disc, *, pad: float = _CROP_PAD) -> float:
    """Share of the crop square (as :func:`crop_fundus` cuts it) that is fundus inside the photo.

    About 0.73 for a whole disc, and at least ``_MIN_FILL`` where the photo clips the field.
    """
    field = _visible_field(np.asarray(rgb).shape, disc)
    return _fill_of(field, _tightened_box(field, disc, pad))


def field_of_view(rgb: np.ndarray, size: int, *, disc: Disc | None = None) -> np.ndarray:
    """Boolean (size, size) mask of the :func:`crop_fundus` pixels that show the fundus.

    Inside the disc and inside the photo (a clipped field's cut-off parts are not fundus);
    without a disc, every pixel that came from the photo.
    """
    rgb = _as_rgb(rgb)
    disc = disc or find_disc(rgb)
    if disc is None:
        return _crop_square(rgb, _disc_square(_whole_frame(rgb), pad=0.0), size)[1]
    box = crop_box(rgb.shape, disc)
    valid = _crop_square(rgb, box, size)[1]
    return valid & _field_in_crop(box, disc, size, 1.0)


def field_in_crop(box: CropBox, disc: Disc, size: int, shrink: float = 1.0) -> np.ndarray:
    """Boolean (size, size): the field (radius times ``shrink``) in the crop of ``box``."""
    return _field_in_crop(box, disc, size, shrink)


def _field_in_crop(box: CropBox, disc: Disc, size: int, shrink: float) -> np.ndarray:
    """The disc (radius times ``shrink``) drawn in the output square of ``box``."""
    scale = size / (2 * box.half)
    cx = (disc.cx - box.cx) * scale + (size - 1) / 2
    cy = (disc.cy - box.cy) * scale + (size - 1) / 2
    return _disc_mask(size, size, cx, cy, shrink * disc.radius * scale)


@lru_cache(maxsize=16)
def _circle_mask(size: int, radius_fraction: float) -> np.ndarray:
    """Boolean disc of ``radius_fraction`` * size/2 centred in a size x size square (read-only)."""
    yy, xx = np.ogrid[:size, :size]
    centre = (size - 1) / 2
    radius = radius_fraction * size / 2
    mask = (xx - centre) ** 2 + (yy - centre) ** 2 <= radius * radius
    mask.flags.writeable = False
    return mask


def apply_ben_graham(
    rgb: np.ndarray, valid: np.ndarray | None = None, field: np.ndarray | None = None
) -> np.ndarray:
    """Ben Graham's local-colour normalisation: 4*img - 4*blur(img, size/30) + 128.

    Pixels outside ``field`` (default: 92% of a disc filling the square) and outside ``valid``
    become neutral grey 128, hiding the bright halo the filter leaves at the disc's edge.
    """
    size = rgb.shape[0]
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigmaX=size / 30)
    out = cv2.addWeighted(rgb, 4.0, blurred, -4.0, 128.0)
    keep = (_circle_mask(size, 0.92) if field is None else field).copy()
    if valid is not None:
        margin = max(1, size // 30)
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        keep &= cv2.erode(valid.astype(np.uint8), kernel).astype(bool)
    out[~keep] = 128
    return out


def apply_clahe(rgb: np.ndarray, *, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the L channel (LAB)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    equaliser = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
    lab[:, :, 0] = equaliser.apply(lab[:, :, 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def apply_equalize(
    rgb: np.ndarray, field: np.ndarray, sample: np.ndarray | None = None
) -> np.ndarray:
    """Per-channel histogram equalisation inside the fundus ``field``; black outside it.

    Each channel's values inside ``sample`` (default: ``field``) are mapped through their own
    cumulative histogram, so every photo leaves with the same within-field distribution
    (about uniform): the "enhancement" of the EyePACS 256 px set, which makes a raw camera
    photo look like an enhanced training photo.
    """
    sample = field if sample is None else sample & field
    out = np.zeros_like(rgb)
    if np.count_nonzero(sample) < 16:
        out[field] = rgb[field]
        return out
    for c in range(3):
        channel = rgb[:, :, c]
        counts = np.bincount(channel[sample], minlength=256).astype(np.float64)
        cdf = np.cumsum(counts)
        low = cdf[np.flatnonzero(counts)[0]]
        lut = np.clip(np.round(255.0 * (cdf - low) / max(cdf[-1] - low, 1.0)), 0, 255)
        out[:, :, c][field] = lut.astype(np.uint8)[channel[field]]
    return out


def crop_fundus(
    rgb: np.ndarray,
    size: int,
    *,
    ben_graham: bool = False,
    clahe: bool = False,
    equalize: bool = False,
    disc: Disc | None = None,
) -> np.ndarray:
    """Crop a square centred on the fundus disc, resize to (size, size, 3) uint8.

    Where no disc is found (e.g. an already-cropped image) the whole photo is padded to a
    centred square instead. ``equalize`` / ``clahe`` / ``ben_graham`` apply those enhancements
    afterwards, in that order.
    """
    rgb = _as_rgb(rgb)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    disc = disc or find_disc(rgb)
    box = photo_box(rgb.shape, disc)
    crop, valid = _crop_square(rgb, box, size)
    return enhance_crop(
        crop, valid, box, disc, ben_graham=ben_graham, clahe=clahe, equalize=equalize
    )


def photo_box(shape: tuple[int, ...], disc: Disc | None) -> CropBox:
    """The square :func:`crop_fundus` cuts from a photo of ``shape`` (the whole frame without
    a disc)."""
    if disc is None:
        h, w = shape[:2]
        return _disc_square(Disc(w / 2, h / 2, max(h, w) / 2), pad=0.0)
    return crop_box(shape, disc)


def enhance_crop(
    crop: np.ndarray,
    valid: np.ndarray,
    box: CropBox,
    disc: Disc | None,
    *,
    ben_graham: bool = False,
    clahe: bool = False,
    equalize: bool = False,
) -> np.ndarray:
    """Equalise, CLAHE and Ben Graham (in that order) a plain crop cut by ``box``.

    ``valid``: the crop's pixels that came from the photo. Returns a new array (``crop`` is
    not changed), so a plain crop can be kept and enhanced several ways.
    """
    size = crop.shape[0]
    if equalize:
        if disc is None:
            whole, inner = valid, valid & _circle_mask(size, 0.95)
        else:
            whole = _field_in_crop(box, disc, size, 1.0) & valid
            inner = _field_in_crop(box, disc, size, 0.95)
        crop = apply_equalize(crop, whole, inner)
    if clahe:
        crop = apply_clahe(crop)
    if ben_graham:
        field = None if disc is None else _field_in_crop(box, disc, size, 0.92)
        crop = apply_ben_graham(crop, valid, field)
    return crop


@dataclass(frozen=True)
class Preprocessing:
    """What a model sees: fundus crop of ``size`` px, optionally equalised, CLAHE, Ben Graham.

    Stored in the model card so a saved model reproduces its own pre-processing.
    """

    size: int = 299
    ben_graham: bool = False
    clahe: bool = False
    equalize: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 8:
            raise ConfigError(f"preprocessing size must be an integer >= 8, got {self.size!r}")

    @property
    def enhances(self) -> bool:
        """Whether the model's input differs from the plain crop a person sees."""
        return self.ben_graham or self.clahe or self.equalize

    def apply(self, rgb: np.ndarray, *, disc: Disc | None = None) -> np.ndarray:
        """Crop, square, resize and enhance one RGB photo (``disc``: reuse a found disc)."""
        return crop_fundus(
            rgb,
            self.size,
            ben_graham=self.ben_graham,
            clahe=self.clahe,
            equalize=self.equalize,
            disc=disc,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown preprocessing option(s): {', '.join(unknown)}")
        return cls(**data)


# --------------------------------------------------------------------------- quality


def _ramp(value: float, threshold: float, span: float) -> float:
    """0.5 at ``threshold``, 1 at ``threshold + span`` (span < 0 for 'lower is better')."""
    return float(np.clip(0.5 + 0.5 * (value - threshold) / span, 0.0, 1.0))


def quality_measures(rgb: np.ndarray, disc: Disc) -> dict[str, float]:
    """What the verdict is made of, measured inside the field at a fixed working scale.

    The field is cropped and resized so that its diameter is ~256 px (``_QUALITY_SIZE``)
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
    return {} if field is None else _measures_of(*field)


def field_crop(rgb: np.ndarray, disc: Disc) -> tuple[np.ndarray, np.ndarray] | None:
    """The field cropped to (256, 256, 3) and the mask of its pixels inside the field.

    None when too little of the field is inside the photo to judge it.
    """
    crop, valid = _crop_square(_as_rgb(rgb), _disc_square(disc), _QUALITY_SIZE)
    inner = _circle_mask(_QUALITY_SIZE, 0.88) & valid
    inner = cv2.erode(inner.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    if np.count_nonzero(inner) < 100:
        return None
    return crop, inner


def _measures_of(crop: np.ndarray, inner: np.ndarray) -> dict[str, float]:
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
    rgb = _as_rgb(rgb)
    disc = disc or find_disc(rgb)
    field = field_crop(rgb, disc) if disc is not None else None
    if disc is None or field is None:
        missing = [REASON_NO_DISC]
        step = max(1, max(rgb.shape[:2]) // _FIND_SIZE)
        small = _shrink(rgb, step)
        if np.percentile(np.maximum(small[:, :, 0], small[:, :, 1]), 99) < 50:
            missing.append(REASON_DARK)  # maybe a fundus, but far too dark to see it
        return Quality(False, 0.0, tuple(missing), label="reject")
    measures = _measures_of(*field)
    if not _looks_like_retina(*field, measures):
        rounded = {name: round(value, 4) for name, value in measures.items()}
        return Quality(False, 0.0, (REASON_NO_DISC,), rounded, label="reject")
    scores = {
        name: _ramp(measures[name], *QUALITY_THRESHOLDS[name])
        for name in ("brightness", "shaded", "clipped", "washed")
    }
    if min(scores.values()) >= 0.5:
        for name in ("contrast", "sharpness", "vessels"):
            scores[name] = _ramp(measures[name], *QUALITY_THRESHOLDS[name])
        if scores["contrast"] >= 0.5:
            scores["colour"] = _ramp(measures["colour"], *QUALITY_THRESHOLDS["colour"])
    failing = {REASON_OF_MEASURE[name] for name, score in scores.items() if score < 0.5}
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
    centre = _circle_mask(_QUALITY_SIZE, 0.3) & inner
    if np.count_nonzero(centre) > 100:
        centre_level = float(lum[centre].mean())
        yy, xx = np.mgrid[:_QUALITY_SIZE, :_QUALITY_SIZE]
        half = (_QUALITY_SIZE - 1) / 2
        angle = np.arctan2(yy - half, xx - half)
        ring = _circle_mask(_QUALITY_SIZE, 0.75) & ~_circle_mask(_QUALITY_SIZE, 0.4) & inner
        sectors = [lum[ring & (np.floor((angle + np.pi) / (np.pi / 4)) == k)] for k in range(8)]
        levels = [float(s.mean()) for s in sectors if s.size > 20]
        if len(levels) == 8 and min(levels) >= 1.6 * centre_level + 10:
            # A dark centre ringed by brighter all round: a pupil if its rim is sharp or the
            # field is dim (a dark room); a fundus's dark macula fades out softly in a bright
            # field.
            dim = float(lum[inner].mean()) < 100
            if dim or _dark_centre_rim(lum, inner, centre, ring) >= 0.12:
                return False
    exposed = all(
        _ramp(measures[name], *QUALITY_THRESHOLDS[name]) >= 0.5
        for name in ("brightness", "shaded", "clipped", "washed")
    )
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
