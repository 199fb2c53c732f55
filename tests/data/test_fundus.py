"""fundus: disc finding, crop geometry, enhancements, and the quality verdict."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.fundus import (
    Disc,
    Preprocessing,
    assess_quality,
    crop_fill,
    crop_fundus,
    find_disc,
)
from retinascreen.errors import ConfigError
from retinascreen.result import Quality
from tests.helpers.drawing import draw_face, draw_fundus, draw_ruler, flat, noise

# --------------------------------------------------------------------------- find_disc


@pytest.mark.parametrize(
    "height,width,radius,centre",
    [
        (128, 128, 56, (64, 64)),
        (96, 160, 40, (60, 50)),  # off-centre in a landscape frame
        (300, 400, 190, (200, 150)),  # clipped at top and bottom, as on EyePACS photos
        (120, 200, 75, (100, 40)),  # clipped at the top only
    ],
)
def test_find_disc_recovers_centre_and_radius(height, width, radius, centre):
    disc = find_disc(draw_fundus(height, width, radius=radius, centre=centre))
    assert disc is not None
    assert abs(disc.cx - centre[0]) < 0.04 * radius
    assert abs(disc.cy - centre[1]) < 0.04 * radius
    assert abs(disc.radius - radius) < 0.05 * radius


def test_find_disc_on_large_photo():
    disc = find_disc(draw_fundus(1500, 2000, radius=700, centre=(1000, 750)))
    assert disc is not None
    assert abs(disc.cx - 1000) < 15 and abs(disc.cy - 750) < 15 and abs(disc.radius - 700) < 20


@pytest.mark.parametrize(
    "picture",
    [
        draw_face(128),
        draw_ruler(128),
        flat(128, 255),
        flat(128, 128),
        flat(128, 0),
        noise(128),
    ],
    ids=["face", "ruler", "white", "grey", "black", "noise"],
)
def test_find_disc_rejects_pictures_without_a_fundus_field(picture):
    assert find_disc(picture) is None


# --------------------------------------------------------------------------- cropping


def test_crop_is_square_of_requested_size_with_disc_centred():
    photo = draw_fundus(120, 200, radius=50, centre=(70, 60))
    out = crop_fundus(photo, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    bright = out.max(axis=2) > 30
    ys, xs = np.nonzero(bright)
    assert abs(xs.mean() - 31.5) < 2 and abs(ys.mean() - 31.5) < 2
    # The disc spans nearly the full square and the corners stay dark.
    assert xs.min() <= 3 and xs.max() >= 60
    assert out[:4, :4].max() < 30 and out[-4:, -4:].max() < 30


def test_clipped_disc_is_padded_with_black_top_and_bottom():
    photo = draw_fundus(240, 400, radius=160, centre=(200, 120))  # disc 320 tall, frame 240
    out = crop_fundus(photo, 100)
    assert out.shape == (100, 100, 3)
    # The frame covers 240/326 of the crop height: about 13 rows of padding above and below.
    assert out[:10, 45:55].max() == 0 and out[-10:, 45:55].max() == 0
    assert out[20:80, 45:55].mean() > 80
    # Left and right edges of the disc touch the sides of the square.
    middle = out[50].max(axis=1)
    assert middle[3] > 30 and middle[-4] > 30


def test_a_field_clipped_to_a_band_fills_the_crop_instead_of_black_bands():
    photo = draw_fundus(180, 400, radius=165, centre=(200, 90))  # band 180 tall of a 330 disc
    disc = find_disc(photo)
    assert disc is not None and abs(disc.radius - 165) < 8
    assert crop_fill(photo, disc) >= 0.70
    out = crop_fundus(photo, 100, disc=disc)
    # The crop spans the band's height (a few rows of black at most), trimming its sides.
    assert out[8:92, 40:60].min(axis=(1, 2)).max() > 0 and out[8:92, 45:55].mean() > 80
    assert out[50, :4].max() > 30 and out[50, -4:].max() > 30


def test_a_field_cut_straight_on_three_sides_is_still_a_fundus():
    photo = draw_fundus(256, 256, radius=190, centre=(150, 90))
    photo[:, :50] = 0  # cut at the left, the right, and by the frame at the top and bottom
    photo[:, 210:] = 0
    disc = find_disc(photo)
    assert disc is not None
    assert crop_fill(photo, disc) >= 0.70


def test_photo_without_a_disc_is_padded_to_a_centred_square():
    photo = np.full((40, 80, 3), 200, np.uint8)  # an already-cropped image with no dark border
    out = crop_fundus(photo, 32)
    assert out.shape == (32, 32, 3)
    assert out[:6].max() == 0 and out[-6:].max() == 0 and out[10:22].min() == 200


def test_ben_graham_greys_the_outside_and_flattens_illumination():
    photo = draw_fundus(128)
    plain = crop_fundus(photo, 96)
    out = crop_fundus(photo, 96, ben_graham=True)
    assert out.shape == (96, 96, 3)
    assert (out[:3, :3] == 128).all()  # outside the field: neutral grey
    centre = out[30:66, 20:50].astype(float)
    assert abs(centre.mean() - 128) < 30  # local mean colour removed
    assert not np.array_equal(out, plain)


def test_clahe_raises_local_contrast():
    photo = draw_fundus(128, gain=0.5)
    plain = crop_fundus(photo, 96)
    enhanced = crop_fundus(photo, 96, clahe=True)
    assert enhanced[30:66, 30:66].std() > plain[30:66, 30:66].std()


def test_equalize_gives_dim_and_bright_photos_the_same_within_field_histogram():
    rng = np.random.default_rng(0)
    texture = rng.normal(0, 12, (200, 200, 1))  # a real fundus has a continuum of levels
    photo = draw_fundus(200, gain=1.0).astype(float)
    field = photo.max(axis=2) > 10
    photo[field] += texture[field]
    bright = np.clip(photo, 0, 255).astype(np.uint8)
    dim = np.clip(photo * 0.5 * np.array([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)  # orange
    outs = [crop_fundus(photo, 128, equalize=True) for photo in (bright, dim)]
    field = outs[0].max(axis=2) > 0
    for out in outs:
        assert (out[:4, :4] == 0).all()  # black outside the field
        for c in (0, 1):  # red and green: blue has too few levels in a dim photo to spread
            p25, p50, p75 = np.percentile(out[:, :, c][field], (25, 50, 75))
            assert 40 < p25 < 100 and 100 < p50 < 160 and 160 < p75 < 220
    plain = crop_fundus(dim, 128)
    assert np.percentile(plain[:, :, 1][field], 75) < 100  # the dim photo as it was


def test_preprocessing_round_trips_through_dict_and_applies():
    steps = Preprocessing(size=48, ben_graham=True, clahe=False)
    assert steps.to_dict() == {"size": 48, "ben_graham": True, "clahe": False, "equalize": False}
    assert Preprocessing.from_dict(steps.to_dict()) == steps
    assert steps.apply(draw_fundus(100)).shape == (48, 48, 3)
    with pytest.raises(ConfigError, match="sharpen"):
        Preprocessing.from_dict({"size": 48, "sharpen": True})
    with pytest.raises(ConfigError):
        Preprocessing(size=0)


# --------------------------------------------------------------------------- quality


@pytest.mark.parametrize("size", [256, 2000])
def test_well_exposed_fundus_is_gradable(size):
    quality = assess_quality(draw_fundus(size))
    assert quality == Quality(True, quality.score, ())
    assert quality.score >= 0.5


def test_clipped_fundus_is_gradable():
    assert assess_quality(draw_fundus(300, 400, radius=190)).gradable


@pytest.mark.parametrize(
    "photo,reason",
    [
        (draw_fundus(256, gain=0.15), "too dark"),
        (draw_fundus(256, gain=3.0), "over-exposed"),
        (draw_fundus(256, blur=0.03), "blurred"),
        (draw_fundus(1000, blur=0.03), "blurred"),
    ],
    ids=["dark", "overexposed", "blurred", "blurred-large"],
)
def test_poor_fundus_photos_are_ungradable_with_reason(photo, reason):
    quality = assess_quality(photo)
    assert not quality.gradable
    assert reason in quality.reasons
    assert quality.score < 0.5


def test_low_contrast_fundus_is_ungradable():
    photo = draw_fundus(256).astype(np.float32)
    inside = photo.max(axis=2) > 20
    mean = photo[inside].mean(axis=0)
    photo[inside] = mean + 0.08 * (photo[inside] - mean)  # a hazy, washed-flat retina
    quality = assess_quality(photo.astype(np.uint8))
    assert not quality.gradable and "low contrast" in quality.reasons


@pytest.mark.parametrize(
    "picture",
    [
        draw_face(256),
        draw_ruler(256),
        flat(256, 255),
        flat(256, 128),
        noise(256),
    ],
    ids=["face", "ruler", "white", "grey", "noise"],
)
def test_pictures_that_are_not_a_fundus_are_ungradable(picture):
    quality = assess_quality(picture)
    assert quality.to_dict() == {
        "gradable": False,
        "score": 0.0,
        "reasons": ["no fundus disc found"],
        "measures": {},
        "label": "reject",
    }


def test_a_round_face_on_black_is_still_ungradable():
    # Geometrically a disc on a dark backdrop (the field finder accepts fields cut by the
    # frame, which a face oval resembles), but it shows no vessels: rejected all the same.
    quality = assess_quality(draw_face(256, dark_background=True))
    assert not quality.gradable and quality.reasons


def test_grey_disc_on_black_is_not_a_colour_fundus():
    photo = draw_fundus(256)
    grey = np.repeat(photo.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    assert find_disc(grey) is not None  # the geometry is there ...
    assert "no fundus disc found" in assess_quality(grey).reasons  # ... but not the colour


def test_quality_reuses_a_given_disc():
    photo = draw_fundus(200)
    assert assess_quality(photo, disc=Disc(100, 100, 90)).gradable


# --------------------------------------------------------------------------- synthetic photos


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_synthetic_gradable_photos_pass(seed):
    from retinascreen.synthetic import generate

    sample = generate(seed, size=256)
    assert assess_quality(sample.image).gradable, assess_quality(sample.image)


@pytest.mark.parametrize(
    "kind,reason",
    [
        ("dark", "too dark"),
        ("overexposed", "over-exposed"),
        ("blurred", "blurred"),
        ("occluded", None),
    ],
)
def test_synthetic_ungradable_photos_fail_with_the_right_reason(kind, reason):
    from retinascreen.synthetic import generate

    for seed in range(3):
        quality = assess_quality(generate(seed, size=256, ungradable=kind).image)
        assert not quality.gradable and quality.score < 0.5
        if reason:
            assert reason in quality.reasons
