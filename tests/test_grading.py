import pytest

from retinascreen import grading


def test_labels_and_referable_rule_follow_icdr():
    assert [grading.label(g) for g in grading.GRADES] == [
        "No DR",
        "Mild NPDR",
        "Moderate NPDR",
        "Severe NPDR",
        "Proliferative DR",
    ]
    assert [grading.is_referable(g) for g in grading.GRADES] == [False, False, True, True, True]


def test_referable_probability_sums_grades_two_to_four():
    assert grading.referable_probability([0.1, 0.2, 0.3, 0.25, 0.15]) == pytest.approx(0.7)


@pytest.mark.parametrize("bad", [-1, 5, 2.5])
def test_out_of_range_grade_is_refused(bad):
    with pytest.raises(ValueError, match="not an ICDR grade"):
        grading.label(bad)
