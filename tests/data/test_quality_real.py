"""The quality gate and the crop on real photographs (``../shared/data``, never copied here).

Skipped with the reason when the folder is absent (a user's clone); when ``CI`` is set they
fail instead, because CI always has the folder. ``bench/quality.py`` gives the full figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.fundus import (
    REASON_BLURRED,
    REASON_DARK,
    REASON_LOW_CONTRAST,
    REASON_NO_DISC,
    REASON_OVEREXPOSED,
    assess_quality,
    crop_fill,
    find_disc,
)
from tests.helpers import photo_sets as sets


@pytest.fixture(scope="module")
def real_data() -> None:
    sets.require_shared_data()


@pytest.fixture(scope="module")
def drive(real_data) -> list[tuple[str, np.ndarray]]:
    return list(sets.drive_photos())


def test_every_drive_photo_is_gradable_and_fills_the_crop(drive):
    assert len(drive) == 40
    for name, rgb in drive:
        disc = find_disc(rgb)
        assert disc is not None, name
        verdict = assess_quality(rgb, disc=disc)
        assert verdict.gradable, (name, verdict.reasons, verdict.measures)
        assert crop_fill(rgb, disc) >= 0.70, name


def test_enhanced_eyepacs_photos_graders_call_good_are_gradable_and_none_is_not_a_fundus(
    real_data,
):
    # About a fifth of these photos are ones EyeQ's graders reject: only Good ones must pass.
    labels = sets.eyeq_quality()
    verdicts = {name: assess_quality(rgb) for name, rgb in sets.eyepacs_photos(every=20)}
    assert len(verdicts) >= 200
    assert not [n for n, v in verdicts.items() if REASON_NO_DISC in v.reasons]
    good = [v.gradable for n, v in verdicts.items() if labels.get(n.split(".")[0]) == "Good"]
    assert len(good) >= 40
    assert np.mean(good) >= 0.97


@pytest.mark.parametrize(
    "name,radius",
    [
        ("13770_right", 86),  # a small field in a rectangle of green speckle
        ("1399_right", 81),  # the same, grey speckle
        ("11648_left", None),  # a strip of the field cut straight at the left and right
        ("10996_left", None),  # a sliver at the frame's edge
    ],
)
def test_hard_eyepacs_layouts_get_their_field_and_a_full_crop(real_data, name, radius):
    rgb = sets.eyepacs_photo(name)
    disc = find_disc(rgb)
    assert disc is not None
    if radius is not None:
        assert disc.radius == pytest.approx(radius, rel=0.06)
    assert crop_fill(rgb, disc) >= 0.70


@pytest.mark.parametrize("index", [0, 7])
def test_a_real_photo_is_found_in_every_upload_layout(drive, index):
    name, rgb = drive[index]
    for layout, photo in sets.real_layouts(rgb, name):
        disc = find_disc(photo)
        assert disc is not None, layout
        verdict = assess_quality(photo, disc=disc)
        assert verdict.gradable, (layout, verdict.reasons, verdict.measures)
        kind = layout.split("/")[1]
        if kind in sets.FRAME_LAYOUTS:
            expected = sets.frame_field_radius(kind)
            assert disc.radius == pytest.approx(expected, rel=0.03), layout


@pytest.mark.parametrize("kind", list(sets.DEGRADATIONS))
def test_degraded_real_photos_are_rejected_with_the_reason_a_grader_gives(drive, kind):
    make, reason = sets.DEGRADATIONS[kind]
    accepted = {reason}
    if reason == REASON_LOW_CONTRAST:
        accepted.add(REASON_OVEREXPOSED)  # a white veil is also a washed-out exposure
    for name, rgb in drive[::5]:
        verdict = assess_quality(make(rgb))
        assert not verdict.gradable, (name, kind, verdict.measures)
        assert accepted & set(verdict.reasons), (name, kind, verdict.reasons)


def test_measures_do_not_depend_on_the_file_resolution(drive):
    _, rgb = drive[3]
    small = assess_quality(sets.resize_long_side(rgb, 256)).measures
    large = assess_quality(sets.camera_frame(rgb, width=4000, height=3000)).measures
    assert small["sharpness"] == pytest.approx(large["sharpness"], rel=0.25)
    assert small["vessels"] == pytest.approx(large["vessels"], rel=0.35)


def test_pictures_that_are_not_a_fundus_are_all_rejected():
    for name, picture in sets.non_fundus_images():
        verdict = assess_quality(picture)
        assert not verdict.gradable, name
        assert verdict.reasons, name


def test_reasons_have_plain_words():
    from retinascreen.data.fundus import REASON_ADVICE, explain_reasons

    reasons = (REASON_DARK, REASON_BLURRED)
    assert explain_reasons(reasons) == [REASON_ADVICE[REASON_DARK], REASON_ADVICE[REASON_BLURRED]]
    assert all(len(text) > 30 for text in REASON_ADVICE.values())
