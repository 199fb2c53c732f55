"""The outer rim of a fundus field of view.

Near the field's edge, vignetting, the camera's bright or dark ring and the cut of the crop
make pale and dark crescents that a lesion model can take for exudates or haemorrhages; the
lesion segmenter can leave that rim out (``ignore_rim`` in its card) and its training can
sample it as hard negatives.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["field_rim"]


def field_rim(field: np.ndarray, share: float) -> np.ndarray:
    """The pixels of ``field`` (bool H x W) within ``share`` of its radius from its edge.

    The radius is that of a disc of the field's area (a field clipped at the top and bottom
    keeps the radius of its circle only approximately). ``share`` 0 gives an empty rim.
    """
    field = np.asarray(field, bool)
    if not 0.0 <= share < 1.0:
        raise ValueError(f"rim share must be in [0, 1), got {share}")
    if share == 0.0 or not field.any():
        return np.zeros_like(field)
    radius = float(np.sqrt(np.count_nonzero(field) / np.pi))
    r = max(1, round(share * radius))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    # Pad with background so the field's straight cut edges erode as edges too.
    padded = cv2.copyMakeBorder(field.astype(np.uint8), r, r, r, r, cv2.BORDER_CONSTANT, value=0)
    inner = cv2.erode(padded, kernel)[r:-r, r:-r].astype(bool)
    return field & ~inner
