"""The maculopathy rule: lesions near the fovea refer a photo whatever its grade."""

from __future__ import annotations

import numpy as np
import pytest

from retinascreen.errors import ConfigError
from retinascreen.result import ModelInfo, Prediction, Quality
from retinascreen.serving.anatomy import Anatomy, draw_anatomy, laterality_note
from retinascreen.serving.maculopathy import (
    MaculaResult,
    MaculopathyRule,
    apply_to,
    lesions_near_fovea,
)
from retinascreen.serving.segmenter import Segmentation

SIDE = 200
FOVEA = (100.0, 100.0)
DD = 30.0  # disc diameter, crop pixels


def _segmentation(**spots: tuple[int, int]) -> Segmentation:
    """A lesion map with one 8x8 spot per named lesion at the given (x, y) (about 9 % of the
    disc's area: above the default rule's smallest area)."""
    names = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool")
    masks = {name: np.zeros((SIDE, SIDE), bool) for name in names}
    for name, (x, y) in spots.items():
        masks[name][y : y + 8, x : x + 8] = True
    maps = {name: m.astype(np.float32) for name, m in masks.items()}
    field = np.ones((SIDE, SIDE), bool)
    return Segmentation(maps, masks, np.zeros((SIDE, SIDE, 3), np.uint8), field, {})


def _anatomy(laterality: str = "right", confidence: float = 0.9) -> Anatomy:
    outline = np.array([[10.0, 10.0], [20.0, 10.0], [20.0, 20.0]])
    return Anatomy((15.0, 15.0), 30.0, 0.9, outline, FOVEA, confidence, laterality, confidence)


def _prediction(grade: int) -> Prediction:
    labels = ("No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "Proliferative DR")
    return Prediction(grade, labels[grade], (0.2,) * 5, grade >= 2, 0.3, Quality(True, 0.9),
                      ModelInfo("m", "1", "0" * 64))  # fmt: skip


def test_exudate_inside_the_macular_zone_counts_outside_does_not() -> None:
    rule = MaculopathyRule()
    near = lesions_near_fovea(_segmentation(hard_exudate=(110, 105)), FOVEA, DD, rule)
    far = lesions_near_fovea(_segmentation(hard_exudate=(160, 160)), FOVEA, DD, rule)
    assert near["hard_exudate"] >= rule.min_area_of_disc
    assert far["hard_exudate"] == 0.0


def test_haemorrhages_count_only_when_the_programme_says_so() -> None:
    seg = _segmentation(haemorrhage=(95, 95))
    assert set(lesions_near_fovea(seg, FOVEA, DD, MaculopathyRule())) == {"hard_exudate"}
    rule = MaculopathyRule(lesions=("hard_exudate", "haemorrhage"), radius_dd=1)
    assert lesions_near_fovea(seg, FOVEA, DD, rule)["haemorrhage"] > 0
    assert rule.describe() == "hard exudates or haemorrhages within 1 disc diameter of the fovea"
    with_dr = MaculopathyRule(radius_dd=1, min_grade=1).describe()
    assert (
        with_dr == "hard exudates within 1 disc diameter of the fovea, in an eye graded 1 or worse"
    )


def test_the_rule_is_a_checked_setting() -> None:
    rule = MaculopathyRule.from_dict({"lesions": ["hard_exudate", "microaneurysm"],
                                      "radius_dd": 1.5, "refer": False})  # fmt: skip
    assert rule.lesions == ("hard_exudate", "microaneurysm") and not rule.refer
    with pytest.raises(ConfigError, match="drusen"):
        MaculopathyRule(lesions=("drusen",))
    with pytest.raises(ConfigError, match="unknown maculopathy setting"):
        MaculopathyRule.from_dict({"radius": 2})
    with pytest.raises(ConfigError, match="min_grade"):
        MaculopathyRule.from_dict({"min_grade": 5})


def test_suspected_maculopathy_refers_a_grade_1_photo_and_says_why() -> None:
    verdict = MaculaResult(True, MaculopathyRule().describe(), True, {"hard_exudate": 0.01},
                           _anatomy())  # fmt: skip
    result = apply_to(_prediction(1), verdict)
    assert result.referable
    assert "suspected maculopathy" in (result.referral_note or "")
    data = result.to_dict()
    assert data["maculopathy"] is True
    assert data["maculopathy_rule"].startswith("hard exudates within 1.25 disc diameters")
    assert data["anatomy"]["laterality"] == "right"
    assert data["anatomy"]["fovea"]["centre"] == [100.0, 100.0]
    assert Prediction.from_dict(data).maculopathy is True


def test_a_programme_that_does_not_refer_keeps_the_grade_decision() -> None:
    verdict = MaculaResult(True, "hard exudates within 1 disc diameter of the fovea", False)
    assert not apply_to(_prediction(1), verdict).referable


def test_results_without_the_check_keep_their_old_shape() -> None:
    assert "anatomy" not in _prediction(2).to_dict()


def test_laterality_disagreement_is_flagged_only_when_confident() -> None:
    seen = _anatomy("left", 0.9).to_dict()
    note = laterality_note("right", seen)
    assert note is not None and "left eye" in note and "right eye" in note
    assert laterality_note("left", seen) is None
    assert laterality_note("right", _anatomy("left", 0.2).to_dict()) is None
    assert laterality_note(None, seen) is None


def test_drawing_marks_disc_fovea_and_macula() -> None:
    photo = np.zeros((SIDE, SIDE, 3), np.uint8)
    drawn = draw_anatomy(photo, _anatomy())
    assert drawn.shape == photo.shape and not photo.any()
    assert drawn[100, 100].any()  # the fovea mark
    assert drawn[100, 130].any() or drawn[100, 131].any()  # the 1-DD circle


def test_a_faint_exudate_counts_only_under_a_lower_map_threshold() -> None:
    seg = _segmentation(hard_exudate=(110, 105))
    faint = {k: v * 0.2 for k, v in seg.maps.items()}  # below the card's threshold
    masks = {k: np.zeros_like(v) for k, v in seg.masks.items()}
    seg = Segmentation(faint, masks, seg.view, seg.field, {})
    assert lesions_near_fovea(seg, FOVEA, DD, MaculopathyRule())["hard_exudate"] == 0.0
    lower = MaculopathyRule.from_dict({"threshold": 0.1})
    assert lesions_near_fovea(seg, FOVEA, DD, lower)["hard_exudate"] >= lower.min_area_of_disc
    with pytest.raises(ConfigError, match="threshold"):
        MaculopathyRule(threshold=1.5)
