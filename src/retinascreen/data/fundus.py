"""The circular fundus field of view: finding it, cropping to it, and judging photo quality.

A fundus photograph is a bright, roughly circular, reddish-orange field on a dark background,
often clipped at the top and bottom (as on many EyePACS photos). :func:`find_disc` finds that
circle at a small working resolution; :class:`Preprocessing` crops a square centred on it
(padding where it is clipped), resizes it and optionally applies Ben Graham's local-colour
normalisation and CLAHE; :func:`assess_quality` gives the gradable / ungradable verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from retinascreen.errors import ConfigError
from retinascreen.result import Quality

# Disc detection runs on the image shrunk to this many pixels on its longest side.
_FIND_SIZE = 256
# Quality measures run on the disc cropped and resized to this size (size-independent blur).
_QUALITY_SIZE = 512

REASON_NO_DISC = "no fundus disc found"
REASON_DARK = "too dark"
REASON_OVEREXPOSED = "over-exposed"
REASON_BLURRED = "blurred"
REASON_LOW_CONTRAST = "low contrast"


@dataclass(frozen=True)
class Disc:
    """The fundus field of view: centre and radius in pixels of the original photo."""

    cx: float
    cy: float
    radius: float


# --------------------------------------------------------------------------- disc finding


def find_disc(rgb: np.ndarray) -> Disc | None:
    """Find the circular fundus field of view, or ``None`` when the photo shows none.

    Thresholds a blurred red/green intensity against the dark background, takes the largest
    bright region and fits a circle to its boundary *away from the image border* (so a disc
    clipped at the top and bottom still gets its true radius). The region must fill that
    circle well (intersection over union >= 0.85), cover a good part of the frame, and what
    lies outside the circle must be dark (a white screen, a portrait or noise is not).
    """
    rgb = _as_rgb(rgb)
    step = max(1, max(rgb.shape[:2]) // _FIND_SIZE)
    small = _shrink(rgb, step)
    h, w = small.shape[:2]
    if min(h, w) < 16:
        return None
    intensity = np.maximum(small[:, :, 0], small[:, :, 1])
    intensity = cv2.GaussianBlur(intensity, (0, 0), sigmaX=max(1.0, max(h, w) / 170))
    background, foreground = np.percentile(intensity, (2, 90))
    if foreground - background < 8 or background > 60:
        return None  # a flat image, or one without any dark border
    threshold = background + max(5.0, 0.12 * (foreground - background))
    mask = (intensity > threshold).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    outline = max(contours, key=cv2.contourArea)
    region = np.zeros((h, w), np.uint8)
    cv2.drawContours(region, [outline], -1, 1, thickness=-1)
    if region.sum() < 0.10 * h * w:
        return None
    points = outline[:, 0, :].astype(np.float64)
    inside = (
        (points[:, 0] > 1) & (points[:, 0] < w - 2) & (points[:, 1] > 1) & (points[:, 1] < h - 2)
    )
    fit = _fit_circle(points[inside])
    if fit is None:
        return None
    cx, cy, radius = fit
    if not (0.15 * min(h, w) <= radius <= 0.8 * max(h, w)):
        return None
    if not (-0.25 * w <= cx <= 1.25 * w and -0.25 * h <= cy <= 1.25 * h):
        return None
    centre = (round(cx * 16), round(cy * 16))
    circle = np.zeros((h, w), np.uint8)
    cv2.circle(circle, centre, round(radius * 16), 1, -1, shift=4)
    union = np.count_nonzero(region | circle)
    if union == 0 or np.count_nonzero(region & circle) / union < 0.85:
        return None
    around = np.ones((h, w), np.uint8)
    cv2.circle(around, centre, round((1.06 * radius + 2) * 16), 0, -1, shift=4)
    if np.count_nonzero(around) > 0.02 * h * w:
        outside_level = float(np.percentile(intensity[around.astype(bool)], 75))
        inside_level = float(np.median(intensity[circle.astype(bool)]))
        if outside_level > max(8.0, 0.35 * inside_level):
            return None
    return Disc((cx + 0.5) * step - 0.5, (cy + 0.5) * step - 0.5, radius * step)


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


def _crop_square(
    rgb: np.ndarray, disc: Disc, size: int, *, pad: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Square crop centred on the disc (black where it leaves the frame), resized to ``size``.

    Also returns a boolean mask of the output pixels that came from inside the photo. Large
    photos are first area-averaged by an integer factor over the crop only (fast and
    alias-free), so a 2000 px photo costs a few milliseconds.
    """
    h, w = rgb.shape[:2]
    half = disc.radius * (1 + pad)
    step = max(1, int(2 * half // size))
    side = max(step, int(np.ceil(2 * half / step)) * step)
    x0, y0 = round(disc.cx - side / 2), round(disc.cy - side / 2)
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


@lru_cache(maxsize=16)
def _circle_mask(size: int, radius_fraction: float) -> np.ndarray:
    """Boolean disc of ``radius_fraction`` * size/2 centred in a size x size square (read-only)."""
    yy, xx = np.ogrid[:size, :size]
    centre = (size - 1) / 2
    radius = radius_fraction * size / 2
    mask = (xx - centre) ** 2 + (yy - centre) ** 2 <= radius * radius
    mask.flags.writeable = False
    return mask


def apply_ben_graham(rgb: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Ben Graham's local-colour normalisation: 4*img - 4*blur(img, size/30) + 128.

    Pixels outside 92% of the disc radius (and outside ``valid``) become neutral grey 128,
    hiding the bright halo the filter leaves at the disc's edge.
    """
    size = rgb.shape[0]
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigmaX=size / 30)
    out = cv2.addWeighted(rgb, 4.0, blurred, -4.0, 128.0)
    keep = _circle_mask(size, 0.92).copy()
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


def crop_fundus(
    rgb: np.ndarray,
    size: int,
    *,
    ben_graham: bool = False,
    clahe: bool = False,
    disc: Disc | None = None,
) -> np.ndarray:
    """Crop a square centred on the fundus disc, resize to (size, size, 3) uint8.

    Where no disc is found (e.g. an already-cropped image) the whole photo is padded to a
    centred square instead. ``ben_graham`` / ``clahe`` apply those enhancements afterwards.
    """
    rgb = _as_rgb(rgb)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    disc = disc or find_disc(rgb)
    if disc is None:
        crop, valid = _crop_square(rgb, _whole_frame(rgb), size, pad=0.0)
    else:
        crop, valid = _crop_square(rgb, disc, size)
    if clahe:
        crop = apply_clahe(crop)
    if ben_graham:
        crop = apply_ben_graham(crop, valid)
    return crop


@dataclass(frozen=True)
class Preprocessing:
    """What a model sees: fundus crop of ``size`` px, optionally Ben Graham and/or CLAHE.

    Stored in the model card so a saved model reproduces its own pre-processing.
    """

    size: int = 299
    ben_graham: bool = False
    clahe: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 8:
            raise ConfigError(f"preprocessing size must be an integer >= 8, got {self.size!r}")

    def apply(self, rgb: np.ndarray, *, disc: Disc | None = None) -> np.ndarray:
        """Crop, square, resize and enhance one RGB photo (``disc``: reuse a found disc)."""
        return crop_fundus(rgb, self.size, ben_graham=self.ben_graham, clahe=self.clahe, disc=disc)

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
    """Raw measures inside the disc at a fixed working size (for tuning and reports).

    ``brightness``: mean of max(R, G); ``shaded``: fraction of the field far darker than its
    bright part (an eyelid shadow); ``whitish`` / ``blown`` / ``washout``: over-exposure;
    ``blue_ratio`` / ``green_ratio``: colour; ``contrast_range``: green 2nd-98th percentile
    spread; ``sharpness``: variance of a Laplacian-of-Gaussian of the brightness-normalised
    green channel, at 256 px so that sensor noise and JPEG blocks do not count as detail.
    """
    crop, valid = _crop_square(_as_rgb(rgb), disc, _QUALITY_SIZE)
    inner = _circle_mask(_QUALITY_SIZE, 0.88) & valid
    kernel = np.ones((9, 9), np.uint8)
    inner = cv2.erode(inner.astype(np.uint8), kernel).astype(bool)
    red, green, blue = (crop[:, :, c][inner] for c in range(3))
    if len(red) < 100:
        return {}
    brightest = np.maximum(red, green)
    darkest = np.minimum(np.minimum(red, green), blue)
    bright_level = float(np.percentile(brightest, 90))
    # Colour: only pixels neither black nor blown out say what colour the retina is.
    usable = (np.maximum(brightest, blue) > 25) & (brightest < 250)
    if usable.mean() > 0.2:
        r, g, b = (float(np.mean(c[usable])) + 1.0 for c in (red, green, blue))
        blue_ratio, green_ratio = b / r, g / r
    else:
        blue_ratio = green_ratio = 0.0
    low, high = np.percentile(green, (2, 98))
    mean_green = float(np.mean(green)) + 1.0
    half = _QUALITY_SIZE // 2
    gray = cv2.resize(crop[:, :, 1], (half, half), interpolation=cv2.INTER_AREA)
    gray = gray.astype(np.float32) * np.float32(128.0 / mean_green)
    detail = cv2.Laplacian(cv2.GaussianBlur(gray, (0, 0), 2.0), cv2.CV_32F)
    inner_half = cv2.resize(inner.astype(np.uint8), (half, half), interpolation=cv2.INTER_NEAREST)
    inner_half = cv2.erode(inner_half, np.ones((5, 5), np.uint8)).astype(bool)
    return {
        "brightness": float(np.mean(brightest)),
        "shaded": float(np.mean(brightest < 0.35 * bright_level)),
        "whitish": float(np.mean(darkest >= 220)),  # all three channels high: washed out
        "blown": float(np.mean(np.minimum(red, green) >= 235)),  # red and green saturated
        # Red saturated over most of the field and even the darkest channel bright: washed out.
        "washout": float(np.mean(darkest)) if np.mean(red >= 250) >= 0.5 else 0.0,
        "blue_ratio": blue_ratio,
        "green_ratio": green_ratio,
        "contrast_range": float(high - low),
        "sharpness": float(np.var(detail[inner_half])) if inner_half.any() else 0.0,
    }


def assess_quality(rgb: np.ndarray, *, disc: Disc | None = None) -> Quality:
    """Is this photo a gradable fundus photograph? ``reasons`` say why not.

    The score is the worst of the per-criterion scores (each 0.5 at its threshold), so it is
    >= 0.5 exactly when the photo is gradable. Thresholds were set on hand-drawn and
    synthetic fundus photos (see tests/data/test_fundus.py).
    """
    rgb = _as_rgb(rgb)
    disc = disc or find_disc(rgb)
    measures = quality_measures(rgb, disc) if disc is not None else {}
    if disc is None or not measures:
        reasons = [REASON_NO_DISC]
        step = max(1, max(rgb.shape[:2]) // _FIND_SIZE)
        small = _shrink(rgb, step)
        if np.percentile(np.maximum(small[:, :, 0], small[:, :, 1]), 99) < 50:
            reasons.append(REASON_DARK)  # maybe a fundus, but far too dark to see it
        return Quality(False, 0.0, tuple(reasons))
    m = measures
    exposure = {
        REASON_DARK: min(_ramp(m["brightness"], 50.0, 40.0), _ramp(m["shaded"], 0.25, -0.15)),
        REASON_OVEREXPOSED: min(
            _ramp(max(m["whitish"], m["blown"]), 0.2, -0.15), _ramp(m["washout"], 95.0, -40.0)
        ),
    }
    components = dict(exposure)
    if exposure[REASON_OVEREXPOSED] >= 0.5:
        # A fundus is reddish-orange: red well above blue and green (not skin, not grey).
        components[REASON_NO_DISC] = min(
            _ramp(m["blue_ratio"], 0.65, -0.2), _ramp(m["green_ratio"], 1.0, -0.2)
        )
    if min(exposure.values()) >= 0.5:
        # Judged only when the exposure is right: a dark or washed-out photo lacks contrast
        # and detail anyway, and its exposure is what the photographer must fix first.
        components[REASON_LOW_CONTRAST] = _ramp(m["contrast_range"], 20.0, 30.0)
        # A small photo, upsampled to the working size, cannot show fine detail: ask less.
        detail = float(np.clip(2 * disc.radius / 256, 0.375, 1.0)) ** 2
        components[REASON_BLURRED] = _ramp(
            float(np.log10(m["sharpness"] + 1e-6)), float(np.log10(1.3 * detail)), 0.5
        )
    reasons = [name for name in _REASON_ORDER if components.get(name, 1.0) < 0.5]
    return Quality(not reasons, min(components.values()), tuple(reasons))


_REASON_ORDER = (
    REASON_NO_DISC,
    REASON_DARK,
    REASON_OVEREXPOSED,
    REASON_BLURRED,
    REASON_LOW_CONTRAST,
)
