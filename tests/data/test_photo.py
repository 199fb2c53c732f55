"""FundusPhoto: one photo's field, verdict and crops found once, maps put back in its frame."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.fundus import Preprocessing, assess_quality, field_of_view, find_disc
from retinascreen.data.photo import FundusPhoto
from retinascreen.errors import NotAnImageError, NotFundusError
from tests.helpers.drawing import draw_face, draw_fundus


@pytest.mark.parametrize(
    "settings",
    [
        Preprocessing(64),
        Preprocessing(96, clahe=True),
        Preprocessing(80, ben_graham=True, equalize=True),
    ],
)
@pytest.mark.parametrize("rgb", [draw_fundus(150, 190, seed=1), draw_fundus(120, radius=70)])
def test_crops_and_facts_are_those_of_the_functions_they_replace(rgb, settings):
    photo = FundusPhoto(rgb)
    assert np.array_equal(photo.crop(settings), settings.apply(rgb))
    assert photo.crop(settings) is photo.crop(settings)  # kept, not cut again
    assert np.array_equal(photo.field(settings.size), field_of_view(rgb, settings.size))
    assert photo.disc == find_disc(rgb)
    assert photo.quality == assess_quality(rgb)


def test_the_photo_cannot_be_changed_through_what_it_hands_out():
    photo = FundusPhoto(draw_fundus(96))
    for array in (photo.rgb, photo.view(64), photo.crop(Preprocessing(64, clahe=True))):
        with pytest.raises(ValueError):
            array[0, 0] = 1


def test_read_takes_paths_bytes_arrays_and_photos(tmp_path):
    from retinascreen.data.images import save_image

    rgb = draw_fundus(96)
    path = tmp_path / "eye.png"
    save_image(path, rgb)
    photo = FundusPhoto.read(str(path))
    assert photo.path == str(path) and np.array_equal(photo.rgb, rgb)
    assert FundusPhoto.read(photo) is photo
    assert np.array_equal(FundusPhoto.read(path.read_bytes()).rgb, rgb)
    with pytest.raises(NotAnImageError):
        FundusPhoto.read(np.zeros((4, 400, 3), np.uint8))


def test_not_a_fundus_is_refused_with_one_message():
    FundusPhoto(draw_fundus(128)).require_fundus()  # a fundus passes
    with pytest.raises(NotFundusError, match="does not look like a fundus photograph"):
        FundusPhoto(draw_face(128)).require_fundus()


@pytest.mark.parametrize("shape", [(300, 250), (200, 320)])
def test_a_crop_frame_map_goes_back_onto_the_photo_pixel_for_pixel(shape):
    """The green channel of a crop, put back on the photo, lies on the photo's own green."""
    h, w = shape
    rgb = draw_fundus(h, w, radius=0.47 * min(h, w), seed=2)
    photo = FundusPhoto(rgb)
    green = photo.view(256)[:, :, 1].astype(np.float32)
    back = photo.to_photo_frame(green)
    assert back.shape == (h, w) and back.dtype == np.float32
    field = photo.photo_field()
    assert not back[~field].any()  # outside the field: 0
    inner = field & (back > 0)
    assert inner.sum() > 0.95 * field.sum()
    truth = rgb[:, :, 1].astype(np.float32)

    def error(dx: int) -> float:
        return float(np.abs(np.roll(back, dx, axis=1)[inner] - truth[inner]).mean())

    assert error(0) < 0.6 * min(error(-2), error(2))  # misplaced by 2 px is far worse
    mask = photo.to_photo_frame(green > 60)
    assert mask.dtype == bool and mask.shape == (h, w) and not mask[~field].any()
