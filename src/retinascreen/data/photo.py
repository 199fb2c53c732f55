"""One fundus photograph, read once: :class:`FundusPhoto`.

A photo's facts are found once and kept, so that every step that needs them (quality verdict,
grading input, heat map, vessel and lesion maps) shares them instead of starting again from
raw pixels::

    >>> photo = FundusPhoto.read("eye.png")
    >>> photo.disc, photo.quality.gradable           # field found once, quality judged once
    >>> x = photo.crop(Preprocessing(size=299, clahe=True))   # memoised per pre-processing
    >>> full = photo.to_photo_frame(vessel_map)       # a crop-frame map back on the photo

The square a crop cuts depends only on the photo and its field, so one plain crop per size is
cut from the full-size photo and each pre-processing enhances that crop; a map drawn on a crop
of any size goes back into the photo's own frame with :meth:`FundusPhoto.to_photo_frame`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from retinascreen.data import crop as crops
from retinascreen.data import field as fields
from retinascreen.data import quality as verdicts
from retinascreen.data.measures import REASON_NO_DISC
from retinascreen.errors import NotAnImageError, NotFundusError
from retinascreen.result import ImageInput

if TYPE_CHECKING:
    from retinascreen.data.crop import CropBox, Preprocessing
    from retinascreen.data.field import Disc
    from retinascreen.result import Quality

__all__ = [
    "MIN_SIDE",
    "NOT_FUNDUS",
    "FundusPhoto",
    "PhotoInput",
    "path_of",
    "refuse_not_fundus",
    "to_rgb",
]

_UNSET = object()
MIN_SIDE = 8
"""Fewest pixels a side of a photo may have (a 1 x 40,000 strip is not a photograph)."""


class FundusPhoto:
    """A decoded photo (RGB uint8, read-only) with its field, quality and crops found once.

    Build one with :meth:`read` (a path, bytes, an array or a FundusPhoto) or from an RGB
    array. Thread-safe: one photo may be shared by the threads of a request.
    """

    def __init__(self, rgb: np.ndarray, path: str | None = None) -> None:
        array = to_rgb(rgb).view()  # not copied: the caller must not change ``rgb`` afterwards
        array.flags.writeable = False
        self.rgb: np.ndarray = array
        self.path: str | None = path
        self._lock = threading.RLock()
        self._disc: Disc | None | object = _UNSET
        self._quality: Quality | None = None
        self._box: CropBox | None = None
        self._squares: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._crops: dict[Preprocessing, np.ndarray] = {}
        self._fields: dict[int, np.ndarray] = {}

    @classmethod
    def read(
        cls, image: PhotoInput, *, max_pixels: int | None = None, name: str | None = None
    ) -> FundusPhoto:
        """The photo of a path, bytes or RGB array (typed errors on bad input); a FundusPhoto
        is returned as it is. ``max_pixels`` / ``name``: as :func:`~retinascreen.data.images.load_image`.
        """
        if isinstance(image, FundusPhoto):
            return image
        if max_pixels is not None and isinstance(image, bytes | bytearray | memoryview):
            from retinascreen.data.images import load_image

            return cls(load_image(bytes(image), max_pixels=max_pixels, name=name))
        return cls(to_rgb(image), path_of(image))

    def __repr__(self) -> str:
        h, w = self.shape
        return f"FundusPhoto({w} x {h}{', ' + repr(self.path) if self.path else ''})"

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) in pixels."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    # -- facts found once -----------------------------------------------------------------------
    @property
    def disc(self) -> Disc | None:
        """The fundus field of view (None when the photo shows none), searched for once."""
        with self._lock:
            if self._disc is _UNSET:
                self._disc = fields.find_disc(self.rgb)
            return self._disc  # type: ignore[return-value]

    @property
    def quality(self) -> Quality:
        """The gradability verdict (:func:`~retinascreen.data.quality.assess_quality`), once."""
        with self._lock:
            if self._quality is None:
                self._quality = verdicts.assess_quality(self.rgb, disc=self.disc)
            return self._quality

    @property
    def box(self) -> CropBox:
        """The square every crop of this photo cuts (the whole frame where no field is found)."""
        with self._lock:
            if self._box is None:
                self._box = crops.photo_box(self.rgb.shape, self.disc)
            return self._box

    def require_fundus(self) -> None:
        """Refuse a photo that is not a fundus photograph (:data:`NOT_FUNDUS`, the product's one
        policy and wording: web, API, ``predict``, ``screen``, ``quality``, ``preprocess``)."""
        refuse_not_fundus(self.quality, self.path)

    # -- crops, memoised ------------------------------------------------------------------------
    def square(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The plain crop (size, size, 3) and the mask of its pixels inside the photo (read-only).

        Cut from the full-size photo once per size.
        """
        with self._lock:
            if size not in self._squares:
                if size < 8:
                    raise ValueError(f"size must be at least 8 pixels, got {size}")
                crop, valid = crops.crop_square(self.rgb, self.box, size)
                crop.flags.writeable = False
                valid.flags.writeable = False
                self._squares[size] = (crop, valid)
            return self._squares[size]

    def crop(self, preprocessing: Preprocessing) -> np.ndarray:
        """What a model with this pre-processing sees: the same pixels as
        ``preprocessing.apply(photo.rgb)``, made once per pre-processing (read-only)."""
        with self._lock:
            if preprocessing not in self._crops:
                plain, valid = self.square(preprocessing.size)
                out = plain
                if preprocessing.enhances:
                    out = crops.enhance_crop(
                        plain,
                        valid,
                        self.box,
                        self.disc,
                        ben_graham=preprocessing.ben_graham,
                        clahe=preprocessing.clahe,
                        equalize=preprocessing.equalize,
                    )
                    out.flags.writeable = False
                self._crops[preprocessing] = out
            return self._crops[preprocessing]

    def view(self, size: int) -> np.ndarray:
        """The plain crop a person sees at ``size`` (read-only)."""
        return self.square(size)[0]

    def field(self, size: int) -> np.ndarray:
        """Boolean (size, size) mask of the crop's pixels that show the fundus (read-only):
        inside the field and inside the photo; without a field, every pixel from the photo."""
        with self._lock:
            if size not in self._fields:
                valid = self.square(size)[1]
                disc = self.disc
                mask = valid if disc is None else valid & crops.field_in_crop(self.box, disc, size)
                mask.flags.writeable = False
                self._fields[size] = mask
            return self._fields[size]

    # -- back into the photo's frame ------------------------------------------------------------
    def photo_field(self) -> np.ndarray:
        """Boolean (H, W) mask of the photo's pixels inside the field (all True without one)."""
        h, w = self.shape
        disc = self.disc
        if disc is None:
            return np.ones((h, w), bool)
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(
            mask,
            (round(disc.cx * 16), round(disc.cy * 16)),
            round(disc.radius * 16),
            1,
            -1,
            shift=4,
        )
        return mask.astype(bool)

    def to_photo_frame(self, crop_map: np.ndarray) -> np.ndarray:
        """A map drawn on a (S, S) crop of this photo, put back at the photo's size and position.

        Bilinear for float maps, nearest for boolean masks; 0 outside the field and outside the
        crop square. Returns (H, W) of the map's dtype.
        """
        array = np.asarray(crop_map)
        if array.ndim != 2 or array.shape[0] != array.shape[1]:
            raise ValueError(f"expected a square (S, S) map, got shape {array.shape}")
        size = array.shape[0]
        h, w = self.shape
        left, top, side = crops.square_origin(self.box, size)
        scale = size / side
        # Photo pixel (x, y) -> crop pixel (u, v), centres aligned as the crop cut them.
        matrix = np.array(
            [[scale, 0.0, (0.5 - left) * scale - 0.5], [0.0, scale, (0.5 - top) * scale - 0.5]]
        )
        boolean = array.dtype == bool
        source = array.astype(np.uint8) if boolean else array.astype(np.float32)
        method = cv2.INTER_NEAREST if boolean else cv2.INTER_LINEAR
        out = cv2.warpAffine(
            source,
            matrix,
            (w, h),
            flags=method | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        out = out * self.photo_field()
        return out.astype(bool) if boolean else out.astype(array.dtype, copy=False)


PhotoInput = ImageInput | FundusPhoto

NOT_FUNDUS = (
    "this does not look like a fundus photograph (no fundus disc found: no round retina on a "
    "dark background): use a colour photograph of the retina"
)


def refuse_not_fundus(quality: Quality, path: str | None = None) -> None:
    """Raise :class:`NotFundusError` (:data:`NOT_FUNDUS`) when ``quality`` found no fundus."""
    if REASON_NO_DISC in quality.reasons:
        text = f"{path}: {NOT_FUNDUS}" if path else NOT_FUNDUS[0].upper() + NOT_FUNDUS[1:] + "."
        raise NotFundusError(text)


def path_of(image: object) -> str | None:
    """The path a photo was read from, as given (None for bytes and arrays)."""
    if isinstance(image, FundusPhoto):
        return image.path
    if isinstance(image, str):
        return image
    if isinstance(image, os.PathLike):
        return os.fspath(image)
    return None


def to_rgb(image: ImageInput | FundusPhoto) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a path, bytes or an array (typed errors on bad input)."""
    if isinstance(image, FundusPhoto):
        return image.rgb
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise NotAnImageError(f"expected an RGB image array (H, W, 3), got shape {image.shape}")
        if min(arr.shape[:2]) < MIN_SIDE:
            height, width = arr.shape[:2]
            raise NotAnImageError(
                f"the image is {width} x {height} pixels (width x height): not a photograph (a fundus "
                f"photograph is roughly square; each side must be at least {MIN_SIDE} pixels)"
            )
        arr = arr[..., :3]
        if arr.dtype != np.uint8:
            if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr)) <= 1.0:
                arr = arr * 255.0
            arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr)
    if isinstance(image, bytes | bytearray | memoryview):
        from retinascreen.data.images import load_image

        return load_image(bytes(image))
    if isinstance(image, str | os.PathLike):
        from retinascreen.data.images import load_image

        path = Path(image)
        if path.is_dir():
            raise NotAnImageError(f"{path} is a directory, not an image")
        if not path.exists():
            raise NotAnImageError(f"{path}: no such file")
        return load_image(path)
    raise NotAnImageError(f"cannot read an image from a {type(image).__name__}")
