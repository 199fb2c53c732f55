"""The fundus photo's field, crop and quality (kept for old imports; the code is split by job).

- :mod:`retinascreen.data.field`: :class:`Disc`, :func:`find_disc` (the circular field of view);
- :mod:`retinascreen.data.crop`: :class:`CropBox`, :func:`crop_box`, :func:`crop_fundus`,
  :class:`Preprocessing` and the enhancements (Ben Graham, CLAHE, equalisation);
- :mod:`retinascreen.data.measures`: the quality measures, thresholds, reasons and advice;
- :mod:`retinascreen.data.quality`: :func:`assess_quality`, the gradability verdict.

New code imports from those modules; every name this module offered is still here.
"""

from __future__ import annotations

from retinascreen.data.crop import (
    CropBox,
    Preprocessing,
    apply_ben_graham,
    apply_clahe,
    apply_equalize,
    circle_mask,
    crop_box,
    crop_fill,
    crop_fundus,
    crop_square,
    disc_square,
    enhance_crop,
    field_in_crop,
    field_of_view,
    photo_box,
    square_origin,
)
from retinascreen.data.field import FIND_SIZE, Disc, as_rgb, disc_mask, find_disc, shrink
from retinascreen.data.measures import (
    QUALITY_SIZE,
    QUALITY_THRESHOLDS,
    REASON_ADVICE,
    REASON_BLURRED,
    REASON_DARK,
    REASON_LEARNED,
    REASON_LOW_CONTRAST,
    REASON_NO_DISC,
    REASON_OF_MEASURE,
    REASON_OVEREXPOSED,
    explain_reasons,
    field_crop,
    measures_of,
    quality_measures,
    ramp,
)
from retinascreen.data.quality import assess_quality

__all__ = [
    "FIND_SIZE",
    "QUALITY_SIZE",
    "QUALITY_THRESHOLDS",
    "REASON_ADVICE",
    "REASON_BLURRED",
    "REASON_DARK",
    "REASON_LEARNED",
    "REASON_LOW_CONTRAST",
    "REASON_NO_DISC",
    "REASON_OF_MEASURE",
    "REASON_OVEREXPOSED",
    "CropBox",
    "Disc",
    "Preprocessing",
    "apply_ben_graham",
    "apply_clahe",
    "apply_equalize",
    "as_rgb",
    "assess_quality",
    "circle_mask",
    "crop_box",
    "crop_fill",
    "crop_fundus",
    "crop_square",
    "disc_mask",
    "disc_square",
    "enhance_crop",
    "explain_reasons",
    "field_crop",
    "field_in_crop",
    "field_of_view",
    "find_disc",
    "measures_of",
    "photo_box",
    "quality_measures",
    "ramp",
    "shrink",
    "square_origin",
]

# The helpers' former private names, for code written against the single module.
_as_rgb, _shrink, _disc_mask, _FIND_SIZE = as_rgb, shrink, disc_mask, FIND_SIZE
_crop_square, _disc_square, _circle_mask = crop_square, disc_square, circle_mask
_QUALITY_SIZE, _ramp, _measures_of = QUALITY_SIZE, ramp, measures_of
