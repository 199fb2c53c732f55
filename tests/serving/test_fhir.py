"""FHIR R4 results: the bundle validates with fhir.resources and carries the right codes."""

from __future__ import annotations

from datetime import date

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.observation import Observation

from retinascreen.errors import RetinascreenError
from retinascreen.serving.fhir import (
    GRADE_SNOMED,
    LOINC,
    SNOMED,
    EyeResult,
    VisitResults,
    diagnostic_report_bundle,
)


def _resources(bundle: dict) -> tuple[DiagnosticReport, list[Observation]]:
    parsed = Bundle.model_validate(bundle)
    report, *observations = (entry.resource for entry in parsed.entry)
    assert isinstance(report, DiagnosticReport)
    assert all(isinstance(o, Observation) for o in observations)
    return report, observations


def _by_id(observations: list[Observation]) -> dict[str, Observation]:
    return {o.id: o for o in observations}


def _codes(concept, system: str) -> set[str]:
    return {c.code for c in concept.coding or [] if c.system == system}


def test_two_eyes_give_a_validated_report_with_an_observation_per_finding():
    visit = VisitResults(
        patient_id="P-17",
        date=date(2026, 3, 4),
        eyes=[
            EyeResult("left", grade=2, gradable=True, maculopathy=True, referable=True),
            EyeResult("right", grade=0, gradable=True, maculopathy=False, referable=False),
        ],
        recommendation="Referable diabetic retinopathy: refer to an ophthalmologist.",
    )
    report, observations = _resources(diagnostic_report_bundle(visit))
    obs = _by_id(observations)
    assert report.status == "final" and report.conclusion == visit.recommendation
    assert report.subject.identifier.value == "P-17"
    # the report points at each of its observations, by the bundle's fullUrls
    bundle = Bundle.model_validate(diagnostic_report_bundle(visit))
    urls = {e.fullUrl for e in bundle.entry[1:]}
    assert {r.reference for r in report.result} == urls

    left = obs["left-grade"]
    assert _codes(left.code, LOINC) == {"71490-7"}
    assert _codes(left.bodySite, SNOMED) == {"8966001"}  # left eye structure
    assert _codes(left.valueCodeableConcept, SNOMED) == {GRADE_SNOMED[2][0]} == {"312904009"}
    assert left.component[0].valueInteger == 2
    right = obs["right-grade"]
    assert _codes(right.bodySite, SNOMED) == {"18944008"}
    assert _codes(right.valueCodeableConcept, SNOMED) == set()  # no SNOMED concept for "no DR"
    assert _codes(right.valueCodeableConcept, LOINC) == {"LA18643-9"}
    assert _codes(obs["left-maculopathy"].code, SNOMED) == {"232020009"}
    assert _codes(obs["left-maculopathy"].valueCodeableConcept, SNOMED) == {"52101004"}
    assert _codes(obs["right-maculopathy"].valueCodeableConcept, SNOMED) == {"272519000"}
    assert obs["left-gradable"].valueBoolean is True
    assert obs["recommendation"].valueString == visit.recommendation


def test_an_ungradable_eye_has_no_grade_but_says_why():
    visit = VisitResults(
        patient_id=None,
        date=date(2026, 3, 4),
        eyes=[EyeResult("right", grade=None, gradable=False)],
        recommendation="Ungradable: retake the photograph.",
    )
    report, observations = _resources(diagnostic_report_bundle(visit))
    obs = _by_id(observations)
    assert report.subject is None
    grade = obs["right-grade"]
    assert grade.valueCodeableConcept is None and grade.dataAbsentReason.coding[0].code
    assert obs["right-gradable"].valueBoolean is False
    assert "right-maculopathy" not in obs  # not assessed: not claimed absent


@pytest.mark.parametrize(
    "eyes, message",
    [
        ([], "at least one"),
        ([EyeResult("middle", 1, True)], "left"),
        ([EyeResult("left", 7, True)], "0..4"),
        ([EyeResult("left", 1, True), EyeResult("left", 2, True)], "one result per eye"),
    ],
)
def test_results_that_cannot_be_reported_are_refused_clearly(eyes, message):
    visit = VisitResults("P", date(2026, 1, 1), eyes, "x")
    with pytest.raises(RetinascreenError, match=message):
        diagnostic_report_bundle(visit)
