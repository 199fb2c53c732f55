"""The outer rim of the field of view, which the lesion segmenter can leave out."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.data.rim import field_rim


def _disc(side: int = 201, radius: float = 90.0) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:side, :side]
    distance = np.hypot(yy - side // 2, xx - side // 2)
    return distance <= radius, distance


def test_the_rim_is_the_outer_share_of_the_radius_inside_the_field():
    field, distance = _disc()
    rim = field_rim(field, 0.1)  # 9 px of a 90 px radius
    assert not (rim & ~field).any()
    assert rim[field & (distance > 84)].all()  # the outer ring is in it
    assert not rim[distance < 78].any()  # the middle is not
    assert 0.15 < rim.sum() / field.sum() < 0.25  # 1 - 0.9**2 = 19 % of the area


def test_a_field_cut_by_the_frame_has_its_cut_edge_in_the_rim():
    field, _ = _disc()
    field[:40] = False  # clipped at the top, as on many photos
    rim = field_rim(field, 0.1)
    assert rim[40, 100] and not rim[60, 100]


def test_no_share_no_rim_and_a_bad_share_is_refused():
    field, _ = _disc()
    assert not field_rim(field, 0.0).any()
    assert not field_rim(np.zeros((8, 8), bool), 0.2).any()
    with pytest.raises(ValueError, match="rim share"):
        field_rim(field, 1.5)
