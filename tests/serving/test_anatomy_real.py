"""The bundled disc model on real photos: IDRiD test photos (disc masks) and srahim-dr (_L/_R)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.helpers.photo_sets import SHARED_DATA, require_shared_data

IDRID = SHARED_DATA / "idrid-segmentation"
SRAHIM = SHARED_DATA / "srahim-dr"


@pytest.fixture(scope="module")
def finder():
    require_shared_data()
    if not IDRID.is_dir() or not SRAHIM.is_dir():
        pytest.skip(f"IDRiD segmentation or srahim-dr not found in {SHARED_DATA}")
    from retinascreen.serving.anatomy import AnatomyFinder

    return AnatomyFinder(threads=1)


def test_disc_centre_and_diameter_match_the_specialists_masks(finder) -> None:
    from retinascreen.data.idrid_masks import read_idrid_masks

    photos = read_idrid_masks(IDRID, "test")[::9]  # 3 unseen photos, evenly spread
    for photo in photos:
        rgb, masks = photo.load(["optic_disc"])
        found = finder.find(rgb)
        assert found is not None, photo.name
        ys, xs = np.nonzero(masks["optic_disc"])
        true_diameter = 2 * math.sqrt(len(xs) / math.pi)
        off = math.hypot(found.disc_centre[0] - xs.mean(), found.disc_centre[1] - ys.mean())
        assert off < 0.25 * true_diameter, photo.name
        assert abs(found.disc_diameter - true_diameter) < 0.25 * true_diameter, photo.name
        assert found.fovea_centre is not None
        # IDRiD photos are macula-centred: the fovea is near the middle, 2-3 DD from the disc.
        d = math.hypot(found.fovea_centre[0] - found.disc_centre[0],
                       found.fovea_centre[1] - found.disc_centre[1]) / true_diameter  # fmt: skip
        assert 1.5 < d < 3.5, photo.name


def test_laterality_of_both_eyes_of_patients(finder) -> None:
    from retinascreen.data.images import load_image

    files = sorted(SRAHIM.glob("0/Patient0*_[LR].jpg"))[:6]  # both eyes of the first patients
    assert files
    right = 0
    for path in files:
        found = finder.find(load_image(path))
        eye = "left" if path.stem.endswith("_L") else "right"
        right += found is not None and found.laterality == eye
    assert right >= len(files) - 1
