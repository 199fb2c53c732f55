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


# (photo, least confidence of its call: 093_R's fovea is faint, its call sure enough to show)
@pytest.mark.parametrize(("name", "least"), [("Patient001_L.jpg", 0.5), ("Patient093_R.jpg", 0.3)])
def test_a_mirrored_photo_flips_the_laterality_call(finder, name: str, least: float) -> None:
    """Patient093_R puts the dark rim where a left eye's macula would be: the fovea must be
    looked for inside the field, towards its centre."""
    from retinascreen.data.images import load_image

    path = next(SRAHIM.glob(f"*/{name}"))
    rgb = load_image(path)
    eye = "left" if path.stem.endswith("_L") else "right"
    other = "right" if eye == "left" else "left"
    found, mirrored = finder.find(rgb), finder.find(np.ascontiguousarray(rgb[:, ::-1]))
    assert found is not None and found.laterality == eye and found.confidence >= least
    assert mirrored is not None and mirrored.laterality == other and mirrored.confidence >= least
    width = rgb.shape[1]
    assert (
        abs(mirrored.disc_centre[0] - (width - 1 - found.disc_centre[0]))
        < 0.2 * found.disc_diameter
    )


def test_an_exudate_in_the_macular_circle_flags_maculopathy_the_same_one_outside_does_not(
    finder,
) -> None:
    """The verdict goes by the exudate's distance from the fovea found on the real photo."""
    import dataclasses

    from retinascreen.data.anatomy import photo_scale, photo_to_crop
    from retinascreen.data.images import load_image
    from retinascreen.data.photo import FundusPhoto
    from retinascreen.serving.maculopathy import MaculaCheck, MaculopathyRule
    from retinascreen.serving.segmenter import Segmenter

    rgb = load_image(SRAHIM / "0" / "Patient001_R.jpg")
    lesions = Segmenter(None, "lesions", threads=1)
    check = MaculaCheck(lesion_model=lesions, threads=1)

    photo = FundusPhoto.read(rgb)
    seg = lesions.segment(photo)
    anatomy = check.finder.find(photo)
    assert anatomy is not None and anatomy.fovea_centre is not None
    size = seg.field.shape[0]
    fx, fy = photo_to_crop(photo.box, size, *anatomy.fovea_centre)
    dd = anatomy.disc_diameter / photo_scale(photo.box, size)

    def with_exudate_at(x: float, y: float):  # type: ignore[no-untyped-def]
        maps = {k: np.zeros_like(v) for k, v in seg.maps.items()}
        r = max(2, round(0.12 * dd))  # a spot of ~7 % of the disc's area
        maps["hard_exudate"][round(y) - r : round(y) + r, round(x) - r : round(x) + r] = 0.9
        masks = {k: v >= 0.5 for k, v in maps.items()}
        return dataclasses.replace(seg, maps=maps, masks=masks)

    near = check.check(photo, segmentation=with_exudate_at(fx + 0.5 * dd, fy))
    far = check.check(photo, segmentation=with_exudate_at(fx, fy - 2.0 * dd))
    assert near.suspected is True and near.refer
    # A programme that counts exudates only with retinopathy (min_grade 1): an exudate-like
    # spot in an eye the grading model finds no DR in is not maculopathy.
    check.rule = MaculopathyRule(min_grade=1)
    healthy = check.check(photo, segmentation=with_exudate_at(fx + 0.5 * dd, fy), grade=0)
    graded = check.check(photo, segmentation=with_exudate_at(fx + 0.5 * dd, fy), grade=2)
    assert healthy.suspected is False and not healthy.refer
    assert graded.suspected is True and graded.refer
    assert far.suspected is False and not far.refer
