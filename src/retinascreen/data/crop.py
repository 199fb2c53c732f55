"""Cropping a photo to its fundus field: :class:`Preprocessing` and :func:`crop_fundus`.

:func:`crop_box` is the square around the visible field (padded with black where the frame
clips it, tightened where that would leave more black than retina); :func:`crop_square` cuts
it at a size; :class:`Preprocessing` (what a model card stores) crops, resizes and optionally
applies histogram equalisation, CLAHE and Ben Graham's local-colour normalisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from retinascreen.data.field import Disc, as_rgb, disc_mask, find_disc, shrink
from retinascreen.errors import ConfigError

# The crop square is the field's diameter plus this margin on each side.
_CROP_PAD = 0.02
# ... tightened, where the photo clips the field, until the field fills this share of it.
_MIN_FILL = 0.72


def _whole_frame(rgb: np.ndarray) -> Disc:
    h, w = rgb.shape[:2]
    return Disc(w / 2, h / 2, max(h, w) / 2)


@dataclass(frozen=True)
class CropBox:
    """The square a crop cuts: centre and half its side, in pixels of the original photo."""

    cx: float
    cy: float
    half: float


def disc_square(disc: Disc, pad: float = _CROP_PAD) -> CropBox:
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
        return disc_square(disc, pad)
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


def crop_square(rgb: np.ndarray, box: CropBox, size: int) -> tuple[np.ndarray, np.ndarray]:
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
        part = shrink(rgb[iy0:iy1, ix0:ix1], step)
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
    rgb = as_rgb(rgb)
    disc = disc or find_disc(rgb)
    if disc is None:
        return crop_square(rgb, disc_square(_whole_frame(rgb), pad=0.0), size)[1]
    box = crop_box(rgb.shape, disc)
    valid = crop_square(rgb, box, size)[1]
    return valid & _field_in_crop(box, disc, size, 1.0)


def field_in_crop(box: CropBox, disc: Disc, size: int, shrink: float = 1.0) -> np.ndarray:
    """Boolean (size, size): the field (radius times ``shrink``) in the crop of ``box``."""
    return _field_in_crop(box, disc, size, shrink)


def _field_in_crop(box: CropBox, disc: Disc, size: int, shrink: float) -> np.ndarray:
    """The disc (radius times ``shrink``) drawn in the output square of ``box``."""
    scale = size / (2 * box.half)
    cx = (disc.cx - box.cx) * scale + (size - 1) / 2
    cy = (disc.cy - box.cy) * scale + (size - 1) / 2
    return disc_mask(size, size, cx, cy, shrink * disc.radius * scale)


@lru_cache(maxsize=16)
def circle_mask(size: int, radius_fraction: float) -> np.ndarray:
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
    keep = (circle_mask(size, 0.92) if field is None else field).copy()
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
    rgb = as_rgb(rgb)
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    disc = disc or find_disc(rgb)
    box = photo_box(rgb.shape, disc)
    crop, valid = crop_square(rgb, box, size)
    return enhance_crop(
        crop, valid, box, disc, ben_graham=ben_graham, clahe=clahe, equalize=equalize
    )


def photo_box(shape: tuple[int, ...], disc: Disc | None) -> CropBox:
    """The square :func:`crop_fundus` cuts from a photo of ``shape`` (the whole frame without
    a disc)."""
    if disc is None:
        h, w = shape[:2]
        return disc_square(Disc(w / 2, h / 2, max(h, w) / 2), pad=0.0)
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
            whole, inner = valid, valid & circle_mask(size, 0.95)
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


CROP_CODE_VERSION = 2
"""Bump whenever a change to the field finder, the crop or the enhancement changes a crop's
pixels: cached training crops made by older code are then not reused (a model trained on them
would see other pixels than the product shows it). 2: the field finder of issue 23."""


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
