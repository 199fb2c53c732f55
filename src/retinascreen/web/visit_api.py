"""REST API of the screening programme under ``/api/v1``: visits, their photos and outcome, the
review queue, graders' reviews and the agreement figures (bearer tokens, as ``api.py``).

Ownership: a clinic user sees only their site's visits (or, without a site, their own), a
grader only the visits in the review queue, an administrator all; any other visit is 404."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from retinascreen.errors import RetinascreenError
from retinascreen.web.access import visits_page
from retinascreen.web.api import created, error, token_required
from retinascreen.web.db import session
from retinascreen.web.handlers import page_number, per_page_number, too_large_message
from retinascreen.web.inputs import text_problem
from retinascreen.web.models import as_utc
from retinascreen.web.visit_models import Visit, role_of
from retinascreen.web.visit_service import (
    can_review,
    clean_decision,
    create_visit,
    find_visit,
    iter_uploads,
    open_item,
    outcome_of,
    photo_of,
    queue,
    record_review,
)

bp = Blueprint("visit_api", __name__, url_prefix="/api/v1")


def visit_json(visit: Visit) -> dict[str, Any]:
    """A visit as the API shows it: patient, date, site, photos, outcome, reviews, queue."""
    base = f"/api/v1/visits/{visit.public_id}/photos"
    item = open_item(visit)
    return {
        "id": visit.public_id,
        "patient_id": visit.pseudonym,
        "site": visit.site,
        "visit_date": visit.visit_date.isoformat(),
        "created": as_utc(visit.created).isoformat() if visit.created else None,
        "photos": [
            {
                "id": p.id,
                "eye": p.eye,
                "field": p.field,
                "grade": p.grade,
                "label": p.result.get("label"),
                "gradable": p.gradable,
                "referable": p.referable,
                "referable_probability": p.referable_probability,
                "photo": f"{base}/{p.id}/photo",
                "heatmap": f"{base}/{p.id}/heatmap.png" if p.heatmap_name else None,
            }
            for p in visit.photos
        ],
        "outcome": outcome_of(visit).to_dict(),
        "reviews": [
            {
                "eye": r.eye,
                "grader": r.grader_name,
                "created": as_utc(r.created).isoformat() if r.created else None,
                "gradable": r.gradable,
                "grade": r.grade,
                "maculopathy": r.maculopathy,
                "note": r.note,
                "machine": r.machine,
            }
            for r in visit.reviews
        ],
        "queue": None if item is None else {"reasons": item.reasons},
    }


def _visit(visit_id: str) -> Visit | None:
    return find_visit(session(), g.api_user, visit_id)


@bp.post("/visits")
@token_required
def create() -> Any:
    try:
        files = list(request.files.items(multi=True))
        form = {k: request.form.get(k) for k in ("patient_id", "visit_date", "site")}
    except RequestEntityTooLarge:
        return error(too_large_message(), 413)
    try:
        visit = create_visit(
            session(),
            g.api_user,
            iter_uploads(files),
            pseudonym=form["patient_id"],
            visit_date=form["visit_date"],
            site=form["site"],
        )
    except RetinascreenError as exc:
        return error(str(exc), exc.status)
    return created(visit_json(visit), f"/api/v1/visits/{visit.public_id}")


@bp.get("/visits")
@token_required
def list_visits() -> Any:
    page = page_number()
    per_page = per_page_number()
    rows, total = visits_page(session(), g.api_user, page=page, per_page=per_page)
    return jsonify(visits=[visit_json(v) for v in rows], page=page, per_page=per_page, total=total)


@bp.get("/visits/<visit_id>")
@token_required
def get_visit(visit_id: str) -> Any:
    visit = _visit(visit_id)
    if visit is None:
        return error("No such visit.", 404)
    return jsonify(visit_json(visit))


@bp.get("/visits/<visit_id>/outcome")
@token_required
def get_outcome(visit_id: str) -> Any:
    visit = _visit(visit_id)
    if visit is None:
        return error("No such visit.", 404)
    return jsonify(outcome_of(visit).to_dict())


@bp.get("/visits/<visit_id>/fhir")
@token_required
def get_fhir(visit_id: str) -> Any:
    """The visit as a FHIR R4 Bundle: a DiagnosticReport with per-eye Observations."""
    from retinascreen.serving.fhir import diagnostic_report_bundle
    from retinascreen.web.results import visit_report

    visit = _visit(visit_id)
    if visit is None:
        return error("No such visit.", 404)
    try:
        bundle = diagnostic_report_bundle(visit_report(visit))
    except RetinascreenError as exc:
        return error(str(exc), 422)
    response = jsonify(bundle)
    response.mimetype = "application/fhir+json"
    return response


def _photo_file(visit_id: str, photo_id: int, what: str) -> Any:
    from retinascreen.web.screenings import send_stored

    visit = _visit(visit_id)
    photo = photo_of(visit, photo_id) if visit is not None else None
    if photo is None:
        return error("No such photo.", 404)
    name = photo.photo_name if what == "photo" else photo.heatmap_name
    if not name:
        return error("This photo has no heat map.", 404)
    return send_stored(name)


@bp.get("/visits/<visit_id>/photos/<int:photo_id>/photo")
@token_required
def photo_file(visit_id: str, photo_id: int) -> Any:
    return _photo_file(visit_id, photo_id, "photo")


@bp.get("/visits/<visit_id>/photos/<int:photo_id>/heatmap.png")
@token_required
def heatmap_file(visit_id: str, photo_id: int) -> Any:
    return _photo_file(visit_id, photo_id, "heatmap")


@bp.post("/visits/<visit_id>/reviews")
@token_required
def create_review(visit_id: str) -> Any:
    if not can_review(g.api_user):
        return error("Only graders and administrators review visits.", 403)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("eyes"), dict):
        return error(
            'Send JSON {"eyes": {"right": {"gradable": true, "grade": 2}}, "note": ""}.', 400
        )
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 2000 or text_problem(note):
        return error("note must be text of at most 2000 characters.", 400)
    eyes = body["eyes"]
    if not eyes or any(eye not in ("right", "left", "unrecorded") for eye in eyes):
        return error("eyes holds 'right', 'left' (or 'unrecorded'), at least one.", 400)
    try:
        decisions = {
            eye: clean_decision(eye, data if isinstance(data, dict) else {})
            for eye, data in eyes.items()
        }
    except RetinascreenError as exc:
        return error(str(exc), 400)
    visit = _visit(visit_id)
    if visit is None:
        return error("No such visit.", 404)
    try:
        record_review(session(), g.api_user, visit, decisions, note.strip())
    except RetinascreenError as exc:
        return error(str(exc), exc.status)
    return created(visit_json(visit))


@bp.get("/review-queue")
@token_required
def review_queue() -> Any:
    if not can_review(g.api_user):
        return error("Only graders and administrators see the review queue.", 403)
    items = queue(session())
    return jsonify(
        items=[
            {
                "visit_id": item.visit.public_id,
                "queued": as_utc(item.created).isoformat(),
                "reasons": item.reasons,
                "site": item.visit.site,
                "visit_date": item.visit.visit_date.isoformat(),
            }
            for item in items
        ]
    )


@bp.get("/agreement")
@token_required
def agreement() -> Any:
    from retinascreen.web.agreement import agreement_report

    if role_of(g.api_user) not in ("grader", "admin"):
        return error("Only graders and administrators see the agreement figures.", 403)
    report = agreement_report(session())
    return jsonify(overall=report.overall, sites=report.sites, months=report.months)
