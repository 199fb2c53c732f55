"""Stored results as the plain :class:`~retinascreen.serving.fhir.VisitResults` the FHIR builder
takes: one screening (:func:`visit_results`) or a whole visit (:func:`visit_report`: per eye the
outcome's grade, maculopathy and gradability, the grader's where one decided, and the policy
table's recommendation).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retinascreen.serving.fhir import EyeResult, VisitResults
from retinascreen.web.models import Screening, as_utc

if TYPE_CHECKING:
    from retinascreen.web.visit_models import Visit

REFER = "Referable diabetic retinopathy: refer to an ophthalmologist."
RESCREEN = "Not referable: rescreen at the usual interval."
RETAKE = "Ungradable: retake the photograph."


def recommendation(screening: Screening) -> str:
    """What should happen next, in the words of the PDF report."""
    if not screening.gradable:
        return RETAKE
    return REFER if screening.referable else RESCREEN


def _maculopathy(result: dict[str, Any]) -> bool | None:
    value = result.get("maculopathy")
    if isinstance(value, dict):  # {"present": bool, "rule": ...} or similar
        value = value.get("present", value.get("value"))
    return value if isinstance(value, bool) else None


def _eye(screening: Screening, result: dict[str, Any]) -> str | None:
    if screening.eye in ("left", "right"):
        return screening.eye
    anatomy = result.get("anatomy")
    side = anatomy.get("laterality") if isinstance(anatomy, dict) else None
    return side if side in ("left", "right") else None


def visit_results(screening: Screening) -> VisitResults:
    """The FHIR builder's input for one screening (report id ``screening-<id>``)."""
    result = screening.result
    eye = EyeResult(
        eye=_eye(screening, result),
        grade=screening.grade if screening.gradable else None,
        gradable=screening.gradable,
        maculopathy=_maculopathy(result),
        referable=screening.referable if screening.gradable else None,
    )
    return VisitResults(
        patient_id=screening.patient_id,
        date=as_utc(screening.created),
        eyes=[eye],
        recommendation=recommendation(screening),
        report_id=f"screening-{screening.id}",
        model=_model_name(screening),
    )


def _model_name(screening: Screening) -> str | None:
    found = screening.result.get("model")
    model: dict[str, Any] = found if isinstance(found, dict) else {}
    return " ".join(str(model.get(k, "")) for k in ("name", "version")).strip() or None


def visit_report(visit: Visit) -> VisitResults:
    """The FHIR builder's input for a visit (report id ``visit-<public id>``)."""
    from retinascreen.web.visit_service import outcome_of

    outcome = outcome_of(visit)
    eyes = [
        EyeResult(
            eye=eye.eye if eye.eye in ("left", "right") else None,
            grade=eye.final.grade if eye.final.gradable else None,
            gradable=eye.final.gradable,
            maculopathy=eye.final.maculopathy if eye.final.gradable else None,
            grader=eye.human.grader if eye.human is not None else None,
        )
        for eye in outcome.eyes
    ]
    rule = outcome.rule
    return VisitResults(
        patient_id=visit.pseudonym,
        date=visit.visit_date,
        eyes=eyes,
        recommendation=f"{rule.summary[:1].upper()}{rule.summary[1:]}: {rule.text}",
        report_id=f"visit-{visit.public_id}",
        model=next((m for m in map(_model_name, visit.photos) if m), None),
    )
