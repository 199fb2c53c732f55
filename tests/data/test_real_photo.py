"""The fundus pipeline on a real photograph, not only on synthetic ones.

scikit-image ships a real colour fundus photograph (``skimage.data.retina``, 1411 x 1411,
from Wikimedia Commons); these tests check that the quality gate and the crop behave on it as
a clinician would expect, including the degraded versions a screening programme sees.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from retinascreen.data.fundus import assess_quality, crop_fundus, find_disc

skdata = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def retina() -> np.ndarray:
    return skdata.retina()


@pytest.mark.parametrize("size", [256, 700, 1411, 2400])
def test_real_fundus_photo_is_gradable_at_every_size(retina, size):
    photo = cv2.resize(retina, (size, size), interpolation=cv2.INTER_AREA)
    verdict = assess_quality(photo)
    assert verdict.gradable, verdict.reasons
    assert verdict.reasons == ()


def test_real_photo_clipped_top_and_bottom_like_eyepacs_is_found_and_padded(retina):
    frame = np.zeros((1000, 1500, 3), np.uint8)
    frame[:, 200:1300] = cv2.resize(retina, (1100, 1100))[50:1050]
    disc = find_disc(frame)
    assert disc is not None
    assert abs(disc.radius - 550) < 0.05 * 550  # the full radius, not the clipped height
    crop = crop_fundus(frame, 128)
    assert crop.shape == (128, 128, 3)
    assert crop[:4].mean() < 10 and crop[-4:].mean() < 10  # padding where the disc was clipped
    assert assess_quality(frame).gradable


@pytest.mark.parametrize(
    "degrade, reason",
    [
        (lambda im: (im * 0.08).astype(np.uint8), "too dark"),
        (lambda im: np.clip(im.astype(np.float32) * 4, 0, 255).astype(np.uint8), "over-exposed"),
        (lambda im: cv2.GaussianBlur(im, (0, 0), 12), "blurred"),
    ],
)
def test_degraded_real_photo_is_ungradable_with_the_reason(retina, degrade, reason):
    verdict = assess_quality(degrade(retina))
    assert not verdict.gradable
    assert reason in verdict.reasons
