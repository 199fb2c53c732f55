"""FHIR R4 results: a visit's per-eye findings as a DiagnosticReport with one Observation each.

:func:`diagnostic_report_bundle` takes a plain :class:`VisitResults` (so it serves a single
screening today and a visit of several photos later) and returns a ``collection`` Bundle, as
JSON-ready dict, that the ``fhir.resources`` models have validated. The models are FHIR R4B
(4.3.0), the R4 technical correction: DiagnosticReport and Observation are unchanged from R4.

Codes (SNOMED CT where a concept exists; looked up in the eCQM value sets "Level of Severity of
Retinopathy Findings" 2.16.840.1.113883.3.526.3.1283 and "Macular Edema Findings Present", the
DICOM code tables shipped with pydicom, and LOINC answer list LL2117-1):

- grade 1..4: SNOMED 312903003 / 312904009 / 312905005 / 59276001 (mild, moderate, severe
  nonproliferative; proliferative retinopathy due to diabetes mellitus); grade 0 has no SNOMED
  concept, so only the LOINC answer LA18643-9 "No apparent retinopathy" (LA18644-7, LA18645-4,
  LA18646-2, LA18648-8 are given beside the SNOMED codes of grades 1..4);
- the grade Observation's code: LOINC 71490-7 (left) / 71491-5 (right) "Diabetic retinopathy
  severity level" (LOINC names the method ophthalmoscopy; the answer list is the ICDR scale);
- maculopathy: SNOMED 232020009 "Disorder of macula due to diabetes mellitus", valued SNOMED
  52101004 Present / 272519000 Absent;
- gradable: DICOM DCM 111101 "Image Quality" (no SNOMED observable found), valueBoolean;
- eye: bodySite SNOMED 8966001 "Left eye structure" / 18944008 "Right eye structure";
- recommendation: DCM 121075 "Recommendation" (the text in DiagnosticReport.conclusion too);
- a grader's decision: the grade Observation's ``performer`` names the grader and its
  ``method`` says "human grader's decision" (otherwise the grade is the machine's).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from retinascreen.errors import RetinascreenError
from retinascreen.grading import LABELS

SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PATIENT_SYSTEM = "urn:retinascreen:patient-id"

GRADE_SNOMED: dict[int, tuple[str, str]] = {
    1: ("312903003", "Mild nonproliferative retinopathy due to diabetes mellitus"),
    2: ("312904009", "Moderate nonproliferative retinopathy due to diabetes mellitus"),
    3: ("312905005", "Severe nonproliferative retinopathy due to diabetes mellitus"),
    4: ("59276001", "Proliferative retinopathy due to diabetes mellitus"),
}
GRADE_LOINC_ANSWER: dict[int, tuple[str, str]] = {
    0: ("LA18643-9", "No apparent retinopathy"),
    1: ("LA18644-7", "Mild non-proliferative retinopathy"),
    2: ("LA18645-4", "Moderate non-proliferative retinopathy"),
    3: ("LA18646-2", "Severe non-proliferative retinopathy"),
    4: ("LA18648-8", "Proliferative retinopathy"),
}
GRADE_CODE = {
    "left": ("71490-7", "Left eye Diabetic retinopathy severity level"),
    "right": ("71491-5", "Right eye Diabetic retinopathy severity level"),
}
EYE_SITE = {"left": ("8966001", "Left eye structure"), "right": ("18944008", "Right eye structure")}
MACULOPATHY = ("232020009", "Disorder of macula due to diabetes mellitus")
PRESENT, ABSENT = ("52101004", "Present"), ("272519000", "Absent")
IMAGE_QUALITY = ("111101", "Image Quality")
RECOMMENDATION = ("121075", "Recommendation")


@dataclass(frozen=True)
class EyeResult:
    """One eye's findings. ``grade`` None or ``gradable`` False: no grade could be given."""

    eye: str | None  # "left" | "right"; None when neither the uploader nor the header said
    grade: int | None
    gradable: bool
    maculopathy: bool | None = None  # None: not assessed
    referable: bool | None = None
    grader: str | None = None
    """Who decided this eye when a human grader did (the grade is then the grader's)."""


@dataclass(frozen=True)
class VisitResults:
    """A visit's results: whom, when, each eye, and what should happen next."""

    patient_id: str | None
    date: date | datetime
    eyes: list[EyeResult]
    recommendation: str
    report_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    model: str | None = None  # the grading model's name and version, shown as the performer


def _coding(system: str, pair: tuple[str, str]) -> dict[str, str]:
    return {"system": system, "code": pair[0], "display": pair[1]}


def _when(moment: date | datetime) -> str:
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return aware.isoformat()
    return moment.isoformat()


def _grade_value(eye: EyeResult) -> dict[str, Any]:
    if eye.grade is None or not eye.gradable:
        return {
            "dataAbsentReason": {
                "coding": [{"system": DATA_ABSENT, "code": "unknown", "display": "Unknown"}],
                "text": "ungradable photograph: retake",
            }
        }
    if eye.grade not in GRADE_LOINC_ANSWER:
        raise RetinascreenError(f"grade must be 0..4, not {eye.grade}")
    codings = []
    if eye.grade in GRADE_SNOMED:
        codings.append(_coding(SNOMED, GRADE_SNOMED[eye.grade]))
    codings.append(_coding(LOINC, GRADE_LOINC_ANSWER[eye.grade]))
    return {
        "valueCodeableConcept": {"coding": codings, "text": LABELS[eye.grade]},
        "component": [
            {
                "code": {"text": "ICDR grade (0-4)"},
                "valueInteger": eye.grade,
            }
        ],
    }


def _observations(visit: VisitResults, subject: dict[str, Any] | None) -> list[dict[str, Any]]:
    effective = _when(visit.date)
    out: list[dict[str, Any]] = []
    for eye in visit.eyes:
        if eye.eye is not None and eye.eye not in EYE_SITE:
            raise RetinascreenError(f"eye must be 'left' or 'right', not {eye.eye!r}")
        name = eye.eye or "eye"
        common: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {"coding": [{"system": OBSERVATION_CATEGORY, "code": "exam", "display": "Exam"}]}
            ],
            "effectiveDateTime": effective,
        }
        if eye.eye:
            site = EYE_SITE[eye.eye]
            common["bodySite"] = {"coding": [_coding(SNOMED, site)], "text": f"{eye.eye} eye"}
        if subject:
            common["subject"] = subject
        grade_code: dict[str, Any] = {"text": "DR grade (ICDR)"}
        if eye.eye:
            grade_code["coding"] = [_coding(LOINC, GRADE_CODE[eye.eye])]
        grade = {**common, "id": f"{name}-grade", "code": grade_code, **_grade_value(eye)}
        if eye.grader:
            grade["performer"] = [{"display": f"grader {eye.grader}"}]
            grade["method"] = {"text": "human grader's decision"}
        quality = {
            **common,
            "id": f"{name}-gradable",
            "code": {"coding": [_coding(DCM, IMAGE_QUALITY)], "text": "Photograph gradable"},
            "valueBoolean": bool(eye.gradable),
        }
        out += [grade, quality]
        if eye.maculopathy is not None:
            out.append(
                {
                    **common,
                    "id": f"{name}-maculopathy",
                    "code": {"coding": [_coding(SNOMED, MACULOPATHY)], "text": "Maculopathy"},
                    "valueCodeableConcept": {
                        "coding": [_coding(SNOMED, PRESENT if eye.maculopathy else ABSENT)]
                    },
                }
            )
    out.append(
        {
            "resourceType": "Observation",
            "id": "recommendation",
            "status": "final",
            "code": {"coding": [_coding(DCM, RECOMMENDATION)], "text": "Recommendation"},
            "effectiveDateTime": effective,
            "valueString": visit.recommendation,
            **({"subject": subject} if subject else {}),
        }
    )
    return out


def diagnostic_report_bundle(visit: VisitResults) -> dict[str, Any]:
    """A validated FHIR ``Bundle`` (collection): the DiagnosticReport first, then its Observations.

    Raises RetinascreenError on a result that cannot be expressed (no eye, an unknown eye or
    grade) and ValueError if the built resources fail ``fhir.resources`` validation.
    """
    from fhir.resources.R4B.bundle import Bundle

    if not visit.eyes:
        raise RetinascreenError("a report needs at least one eye's result")
    names = [eye.eye or "eye" for eye in visit.eyes]
    if len(set(names)) != len(names):
        raise RetinascreenError("a report holds one result per eye (merge a visit's photos first)")
    subject = (
        {"identifier": {"system": PATIENT_SYSTEM, "value": visit.patient_id}}
        if visit.patient_id
        else None
    )
    observations = _observations(visit, subject)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": visit.report_id,
        "status": "final",
        "code": {"text": "Diabetic retinopathy screening of fundus photographs"},
        "effectiveDateTime": _when(visit.date),
        "issued": datetime.now(UTC).isoformat(),
        "result": [{"reference": f"urn:uuid:{_uuid(visit, o['id'])}"} for o in observations],
        "conclusion": visit.recommendation,
    }
    if subject:
        report["subject"] = subject
    if visit.model:
        report["performer"] = [{"display": visit.model}]
    entries = [{"fullUrl": f"urn:uuid:{_uuid(visit, 'report')}", "resource": report}]
    entries += [
        {"fullUrl": f"urn:uuid:{_uuid(visit, o['id'])}", "resource": o} for o in observations
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": datetime.now(UTC).isoformat(),
        "entry": entries,
    }
    return Bundle.model_validate(bundle).model_dump(mode="json", exclude_none=True)


def _uuid(visit: VisitResults, name: str) -> str:
    """A stable UUID per resource of this report (fullUrl and the report's references agree)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"retinascreen:{visit.report_id}:{name}"))
