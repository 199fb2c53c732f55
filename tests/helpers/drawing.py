"""Simple hand-drawn test photographs: fundus-like discs and things that are not a fundus."""

from __future__ import annotations

import cv2
import numpy as np


def draw_fundus(
    height: int = 128,
    width: int | None = None,
    *,
    radius: float | None = None,
    centre: tuple[float, float] | None = None,
    gain: float = 1.0,
    blur: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """An orange disc on black with dark red vessels and a bright optic disc (RGB uint8).

    ``radius`` larger than height/2 clips the disc at top and bottom as on EyePACS photos.
    ``gain`` scales the exposure; ``blur`` is a Gaussian sigma as a fraction of the radius.
    """
    width = width or height
    radius = radius or 0.45 * min(height, width)
    cx, cy = centre or (width / 2, height / 2)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    dist = np.hypot(xx - cx, yy - cy) / radius
    inside = dist <= 1.0
    shade = np.clip(1.0 - 0.35 * dist**2, 0, 1)  # vignetting toward the rim
    image = np.zeros((height, width, 3), np.float32)
    for channel, value in enumerate((210.0, 105.0, 45.0)):
        image[:, :, channel] = value * shade
    # Vessels: dark red arcs leaving the optic disc.
    disc_x, disc_y = cx + 0.35 * radius, cy
    vessels = np.zeros((height, width), np.uint8)
    thickness = max(1, round(radius / 45))
    for k in range(8):
        angle = np.pi * (0.15 + 0.25 * k) + rng.uniform(-0.1, 0.1)
        points = []
        for t in np.linspace(0, 1.4 * radius, 24):
            bend = angle + 0.6 * t / radius * (1 if k % 2 else -1)
            points.append((disc_x + t * np.cos(bend), disc_y + t * np.sin(bend)))
        cv2.polylines(vessels, [np.round(points).astype(np.int32)], False, 255, thickness)
    vessel = vessels > 0
    image[vessel] *= np.array([0.55, 0.35, 0.4], np.float32)
    # Optic disc: a bright yellowish ellipse.
    disc = np.hypot((xx - disc_x) / (0.12 * radius), (yy - disc_y) / (0.14 * radius)) <= 1
    image[disc] = (250.0, 215.0, 150.0)
    # Fine texture of the choroid.
    image += rng.normal(0, 4, image.shape).astype(np.float32)
    image *= gain
    image[~inside] = rng.uniform(0, 6, (np.count_nonzero(~inside), 3))
    if blur > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur * radius)
    return np.clip(image, 0, 255).astype(np.uint8)


def draw_face(size: int = 128, *, dark_background: bool = False) -> np.ndarray:
    """A portrait: a skin-coloured oval face with eyes, brows and mouth."""
    background = (15, 15, 20) if dark_background else (120, 150, 190)
    image = np.full((size, size, 3), background, np.uint8)
    centre = (size // 2, size // 2)
    cv2.rectangle(image, (0, int(size * 0.8)), (size, size), (40, 60, 120), -1)  # shirt
    cv2.ellipse(image, centre, (int(size * 0.33), int(size * 0.42)), 0, 0, 360, (224, 172, 140), -1)
    cv2.ellipse(
        image,
        (centre[0], int(size * 0.2)),
        (int(size * 0.34), int(size * 0.18)),
        0,
        180,
        360,
        (60, 40, 30),
        -1,
    )  # hair
    for side in (-1, 1):
        eye = (centre[0] + side * int(size * 0.13), int(size * 0.45))
        cv2.circle(image, eye, max(2, size // 25), (255, 255, 255), -1)
        cv2.circle(image, eye, max(1, size // 60), (50, 30, 20), -1)
        cv2.line(
            image,
            (eye[0] - size // 20, eye[1] - size // 14),
            (eye[0] + size // 20, eye[1] - size // 14),
            (60, 40, 30),
            max(1, size // 60),
        )
    cv2.ellipse(
        image,
        (centre[0], int(size * 0.68)),
        (size // 9, size // 25),
        0,
        0,
        180,
        (170, 60, 60),
        max(1, size // 50),
    )
    return image


def draw_ruler(size: int = 128) -> np.ndarray:
    """A ruler-like picture: black and white stripes with tick marks."""
    image = np.full((size, size, 3), 235, np.uint8)
    step = max(4, size // 16)
    for x in range(0, size, step):
        cv2.rectangle(image, (x, 0), (x + step // 2, size), (10, 10, 10), -1)
    for x in range(0, size, max(2, step // 4)):
        cv2.line(image, (x, 0), (x, size // 6), (10, 10, 10), 1)
    return image


def flat(size: int, value: int) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def noise(size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
