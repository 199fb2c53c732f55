"""A raw camera photo made from an enhanced crop: the look that external clinics upload.

The training photos (EyePACS-256) are cropped to the fundus and contrast-enhanced by a third
party; photos from a screening camera are not. :func:`raw_looking` undoes the enhancement the
way a camera would have shown the eye: contrast lowered towards the orange of a raw fundus, a
colour cast, vignetting and gamma, the field placed in a black 1,600 x 1,200 frame (sometimes
clipped at the top and bottom) and JPEG 85. Used to check, and to choose decisions that hold,
on photos unlike the training set (``bench/raw_photos.py``, ``tools/make_demo_model.py``).
"""

from __future__ import annotations

import cv2
import numpy as np

FRAME = (1200, 1600)


def raw_looking(enhanced: np.ndarray, seed: int) -> np.ndarray:
    """``enhanced`` (an RGB fundus crop, black outside the field) as a raw camera frame."""
    rng = np.random.default_rng(seed)
    rgb = enhanced.astype(np.float32)
    field = rgb.max(axis=2) > 20
    base = np.array([170.0, 80.0, 30.0]) * rng.uniform(0.8, 1.15, 3)  # a raw fundus's orange
    mean = rgb[field].mean(axis=0)
    out = base + rng.uniform(0.3, 0.5) * (rgb - mean)  # far less contrast than the enhanced set
    h, w = field.shape
    yy, xx = np.mgrid[:h, :w]
    centre = np.array([w, h]) / 2 + rng.normal(0, 0.08 * w, 2)
    dist = np.hypot(xx - centre[0], yy - centre[1]) / (0.5 * max(h, w))
    out *= np.clip(1.05 - rng.uniform(0.2, 0.45) * dist**2, 0.3, 1.1)[:, :, None]
    out = np.clip(out, 0, 255) ** rng.uniform(0.9, 1.1) / 255 ** (rng.uniform(0.9, 1.1) - 1)
    out[~field] = 0
    out = np.clip(out, 0, 255).astype(np.uint8)
    frame = np.zeros((*FRAME, 3), np.uint8)  # a 2 MP camera frame, black around the field
    side = int(rng.uniform(0.85, 1.05) * frame.shape[0])  # some fields clipped top and bottom
    big = cv2.resize(out, (side, side), interpolation=cv2.INTER_CUBIC)
    top = (frame.shape[0] - side) // 2
    rows = slice(max(0, -top), max(0, -top) + min(side, frame.shape[0]))
    left = (frame.shape[1] - side) // 2
    frame[max(0, top) : max(0, top) + rows.stop - rows.start, left : left + side] = big[rows]
    ok, jpeg = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError("could not encode the raw-looking frame")
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    if decoded is None:
        raise ValueError("could not decode the raw-looking frame")
    return np.ascontiguousarray(decoded[:, :, ::-1])


__all__ = ["raw_looking"]
