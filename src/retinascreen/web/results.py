"""A stored screening as the plain :class:`~retinascreen.serving.fhir.VisitResults` of a visit.

One screening is one eye's photo today; when visits land, a visit's screenings map to one
``VisitResults`` with an ``EyeResult`` per eye, and the FHIR builder stays as it is.
"""

from __future__ import annotations

from typing import Any

from retinascreen.serving.fhir import EyeResult, VisitResults
from retinascreen.web.models import Screening, as_utc

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
    found = result.get("model")
    model: dict[str, Any] = found if isinstance(found, dict) else {}
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
        model=" ".join(str(model.get(k, "")) for k in ("name", "version")).strip() or None,
    )
