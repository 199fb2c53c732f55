"""The result's referral note: one sentence when the grade and the referral decision disagree."""

from __future__ import annotations

import pytest

from retinascreen.result import ModelInfo, Prediction, Quality, ReferralRule

MODEL = ModelInfo("m", "1", "0" * 64)


def prediction(grade, referable, p_referable, rule, gradable=True):
    labels = ("No DR", "Mild NPDR", "Moderate NPDR", "Severe NPDR", "Proliferative DR")
    return Prediction(
        grade=grade,
        label=labels[grade],
        probabilities=(0.2, 0.2, 0.2, 0.2, 0.2),
        referable=referable,
        referable_probability=p_referable,
        quality=Quality(gradable, 0.9 if gradable else 0.1),
        model=MODEL,
        referral_rule=rule,
    )


def test_referred_although_the_grade_is_not_referable():
    result = prediction(0, True, 0.2214, ReferralRule(0.1727, 0.9))
    assert result.referral_note == (
        "Referred although the predicted grade is 0 (No DR): the probability of referable DR "
        "(22 %) is above this model's referral threshold (17 %), which was chosen to catch 90 % "
        "of referable eyes."
    )


def test_not_referred_although_the_grade_is_referable_without_a_stated_sensitivity():
    result = prediction(2, False, 0.4, ReferralRule(0.55))
    assert result.referral_note == (
        "Not referred although the predicted grade is 2 (Moderate NPDR): the probability of "
        "referable DR (40 %) is below this model's referral threshold (55 %)."
    )


def test_percentages_that_round_alike_get_a_decimal():
    note = prediction(1, True, 0.1731, ReferralRule(0.1727, 0.95)).referral_note
    assert "(17.31 %) is above this model's referral threshold (17.27 %)" in note
    assert "catch 95 % of referable eyes" in note


@pytest.mark.parametrize(
    ("grade", "referable", "rule", "gradable"),
    [
        (0, False, ReferralRule(0.17, 0.9), True),  # they agree
        (3, True, ReferralRule(0.17, 0.9), True),
        (0, True, None, True),  # no threshold: nothing to explain
        (0, True, ReferralRule(0.17, 0.9), False),  # ungradable: "retake", not a decision
    ],
)
def test_no_note_where_there_is_nothing_to_explain(grade, referable, rule, gradable):
    result = prediction(grade, referable, 0.3, rule, gradable)
    assert result.referral_note is None
    assert result.to_dict()["referral_note"] is None


def test_the_note_and_its_rule_survive_a_stored_result():
    result = prediction(0, True, 0.22, ReferralRule(0.17, 0.9))
    data = result.to_dict()
    assert data["referral_rule"] == {"threshold": 0.17, "target_sensitivity": 0.9}
    assert data["referral_note"] == result.referral_note
    assert Prediction.from_dict(data).referral_note == result.referral_note
    older = {k: v for k, v in data.items() if not k.startswith("referral")}
    assert Prediction.from_dict(older).referral_note is None
