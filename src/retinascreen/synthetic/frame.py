"""Where things are in a synthetic photograph: the field of view, the eye and its quadrants.

Positions on the retina are given in a *retina frame* in units of the field-of-view radius:
``a`` points nasal (towards the optic disc) and ``b`` superior. :class:`Frame` maps them to
image pixels, applying the camera rotation and mirroring left eyes (disc on the nasal side).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

QUADRANTS: tuple[str, ...] = ("superotemporal", "superonasal", "inferotemporal", "inferonasal")
"""Retinal quadrants, indexed as in :func:`quadrant_map` (split at the disc-fovea midpoint)."""


@dataclass(frozen=True)
class Frame:
    """Image size, field of view (circle) and orientation of one photograph."""

    width: int
    height: int
    cx: float
    cy: float
    radius: float
    rotation: float  # radians, camera roll
    eye: str  # "right" or "left"

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (image x, y) of the nasal and superior retina directions."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        nasal = np.array([c, s])
        superior = np.array([s, -c])
        if self.eye == "left":
            nasal[0] *= -1
            superior[0] *= -1
        return nasal, superior

    def to_image(self, a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
        """Retina-frame coordinates (units of the radius) -> image pixel coordinates (..., 2)."""
        nasal, superior = self.axes
        a = np.asarray(a, dtype=np.float64)[..., None]
        b = np.asarray(b, dtype=np.float64)[..., None]
        return np.array([self.cx, self.cy]) + self.radius * (a * nasal + b * superior)

    def retina_direction(self, heading: np.ndarray | float) -> np.ndarray:
        """A heading in the retina frame (radians from nasal towards superior) -> image unit vector."""
        nasal, superior = self.axes
        h = np.asarray(heading, dtype=np.float64)[..., None]
        return np.cos(h) * nasal + np.sin(h) * superior


@lru_cache(maxsize=8)
def pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x, y) as float32 arrays of shape (height, width), read-only."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def fov_alpha(frame: Frame, edge_px: float = 1.2) -> np.ndarray:
    """Soft (anti-aliased) field-of-view mask in 0..1, float32 (height, width)."""
    xs, ys = pixel_grid(frame.width, frame.height)
    dist = np.sqrt((xs - np.float32(frame.cx)) ** 2 + (ys - np.float32(frame.cy)) ** 2)
    return np.clip((np.float32(frame.radius) - dist) / np.float32(edge_px) + 0.5, 0, 1)


def quadrant_map(meta: dict, shape: tuple[int, int]) -> np.ndarray:
    """Quadrant index (see :data:`QUADRANTS`) of every pixel, int8 array of ``shape`` (h, w).

    Quadrants are split by the disc-fovea line and its perpendicular through the midpoint of
    disc and fovea, as recorded in ``Sample.meta["anatomy"]``.
    """
    anatomy = meta["anatomy"]
    mx, my = anatomy["quadrant_centre"]
    ux, uy = anatomy["nasal_axis"]
    vx, vy = anatomy["superior_axis"]
    xs, ys = pixel_grid(shape[1], shape[0])
    dx, dy = xs - mx, ys - my
    nasal = (dx * ux + dy * uy) > 0
    superior = (dx * vx + dy * vy) > 0
    return (np.where(superior, 0, 2) + nasal.astype(np.int8)).astype(np.int8)


def quadrant_of(points: np.ndarray, meta: dict) -> np.ndarray:
    """Quadrant index of image points (n, 2)."""
    anatomy = meta["anatomy"]
    d = np.asarray(points, dtype=np.float64) - np.asarray(anatomy["quadrant_centre"])
    nasal = d @ np.asarray(anatomy["nasal_axis"]) > 0
    superior = d @ np.asarray(anatomy["superior_axis"]) > 0
    return np.where(superior, 0, 2) + nasal.astype(int)
