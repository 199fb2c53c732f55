"""Disc fitting, fovea finding and laterality on synthetic photos whose anatomy is known."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.anatomy import (
    crop_to_photo,
    disc_from_map,
    find_fovea,
    laterality_of,
    photo_to_crop,
)
from retinascreen.data.fundus import CropBox, find_disc
from retinascreen.synthetic import generate


def _photo(seed: int, eye: str):  # type: ignore[no-untyped-def]
    sample = generate(seed, 0, size=384, eye=eye)
    anatomy = sample.meta["anatomy"]
    h, w = sample.image.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    field_disc = find_disc(sample.image)
    assert field_disc is not None
    field = (xx - field_disc.cx) ** 2 + (yy - field_disc.cy) ** 2 <= (0.97 * field_disc.radius) ** 2
    dx, dy = anatomy["disc"]
    prob = ((xx - dx) ** 2 + (yy - dy) ** 2 <= anatomy["disc_radius"] ** 2).astype(np.float32)
    return sample.image, field, prob, anatomy


@pytest.mark.parametrize("eye", ["left", "right"])
@pytest.mark.parametrize("seed", [1, 4, 9])
def test_fovea_and_laterality_match_the_drawn_eye(seed: int, eye: str) -> None:
    image, field, prob, truth = _photo(seed, eye)
    disc = disc_from_map(prob, field)
    assert disc is not None
    assert abs(disc.diameter - 2 * truth["disc_radius"]) < 0.1 * disc.diameter
    assert np.hypot(disc.cx - truth["disc"][0], disc.cy - truth["disc"][1]) < 2
    fovea = find_fovea(image, field, disc)
    assert fovea is not None
    error_dd = np.hypot(fovea.x - truth["fovea"][0], fovea.y - truth["fovea"][1]) / disc.diameter
    assert error_dd < 0.6
    assert laterality_of(disc.cx, fovea.x) == eye
    assert 0.0 < fovea.confidence <= 1.0


def test_no_disc_in_an_empty_map() -> None:
    field = np.ones((64, 64), bool)
    assert disc_from_map(np.zeros((64, 64), np.float32), field) is None


def test_the_region_with_most_mass_is_the_disc() -> None:
    field = np.ones((200, 200), bool)
    prob = np.zeros((200, 200), np.float32)
    prob[10:45, 10:45] = 0.7  # a bright false alarm with over half the mass
    prob[100:140, 60:100] = 0.95
    disc = disc_from_map(prob, field)
    assert disc is not None
    assert 75 < disc.cx < 85 and 115 < disc.cy < 125
    assert disc.confidence < 0.9  # the rival lowers it


def test_crop_and_photo_coordinates_invert() -> None:
    box = CropBox(934.3, 662.5, 803.7)
    for x, y in [(0.0, 0.0), (100.5, 700.25), (383.0, 12.0)]:
        px, py = crop_to_photo(box, 384, x, y)
        assert photo_to_crop(box, 384, px, py) == pytest.approx((x, y), abs=1e-6)
    # The crop's centre is the box's centre (within the rounding of the square).
    cx, cy = crop_to_photo(box, 384, 191.5, 191.5)
    assert abs(cx - box.cx) < 3 and abs(cy - box.cy) < 3


def test_the_disc_side_of_the_field_is_a_second_laterality_cue() -> None:
    from retinascreen.data.anatomy import DiscFit, disc_side

    yy, xx = np.mgrid[:200, :200]
    field = (xx - 100) ** 2 + (yy - 100) ** 2 <= 90**2
    outline = np.zeros((1, 2), np.float32)
    right = disc_side(DiscFit(160.0, 100.0, 20.0, outline, 0.9), field)
    left = disc_side(DiscFit(60.0, 100.0, 20.0, outline, 0.9), field)
    centred = disc_side(DiscFit(102.0, 100.0, 20.0, outline, 0.9), field)
    assert right[0] == 1 and right[1] > 0.9
    assert left[0] == -1 and left[1] > 0.9
    assert centred[1] < 0.1  # a disc-centred photo says nothing about the eye


def _with_rim_crescent(prob: np.ndarray, field: np.ndarray, value: float) -> np.ndarray:
    """``prob`` plus a bright crescent along the bottom of the field (stray light at the rim),
    larger than the disc."""
    h, w = field.shape
    yy, xx = np.mgrid[:h, :w]
    ys, xs = np.nonzero(field)
    cx, cy, r = xs.mean(), ys.mean(), np.sqrt(xs.size / np.pi)
    dist = np.hypot(xx - cx, yy - cy)
    crescent = field & (dist > 0.86 * r) & (yy > cy + 0.5 * r)
    return np.maximum(prob, np.where(crescent, value, 0.0)).astype(np.float32)


@pytest.mark.parametrize("with_view", [False, True])
def test_a_bright_crescent_at_the_rim_is_not_taken_for_the_disc(with_view: bool) -> None:
    image, field, prob, truth = _photo(4, "right")
    map_ = _with_rim_crescent(0.8 * prob, field, 0.99)
    assert map_[map_ > 0.9].sum() > 1.5 * map_[(map_ > 0) & (map_ < 0.9)].sum()  # more mass
    disc = disc_from_map(map_, field, 0.5, image if with_view else None)
    assert disc is not None
    assert np.hypot(disc.cx - truth["disc"][0], disc.cy - truth["disc"][1]) < 3


def test_a_dim_disc_is_still_found_with_a_low_confidence() -> None:
    image, field, prob, truth = _photo(9, "left")
    disc = disc_from_map(0.35 * prob, field, 0.5, image)
    assert disc is not None
    assert np.hypot(disc.cx - truth["disc"][0], disc.cy - truth["disc"][1]) < 3
    assert disc.confidence < disc_from_map(prob, field, 0.5, image).confidence  # type: ignore[union-attr]
    assert disc_from_map(0.01 * prob, field, 0.5) is None  # no view, no disc: nothing to show
