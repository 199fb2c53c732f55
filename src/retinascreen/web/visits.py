"""Pages of the screening programme: a visit's upload form, the visits list, the outcome page,
its photos and PDFs, the graders' queue and review page, and the agreement page with its CSV."""

from __future__ import annotations

import io
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge

from retinascreen.errors import RetinascreenError
from retinascreen.web.access import visits_page
from retinascreen.web.db import session
from retinascreen.web.handlers import page_count, page_number, too_large_message
from retinascreen.web.outcome import EYES
from retinascreen.web.visit_models import Visit, role_of
from retinascreen.web.visit_service import (
    FIELD_NAMES,
    SLOTS,
    EyeDecision,
    can_review,
    can_upload,
    clean_decision,
    create_visit,
    eyes_photos,
    find_visit,
    iter_uploads,
    open_item,
    outcome_of,
    photo_of,
    policy,
    queue,
    record_review,
)

bp = Blueprint("visits", __name__)


@bp.app_template_filter("reason_text")
def reason_text(reason: dict[str, str]) -> str:
    """A queue reason in words: ``left eye: no gradable macula photo``."""
    eye = reason.get("eye", "")
    where = "visit" if eye == "both" else f"{eye} eye"
    return f"{where}: {reason.get('text', '')}"


def _visit(public_id: str) -> Visit:
    visit = find_visit(session(), current_user, public_id)
    if visit is None:
        abort(404)
    return visit


def _render_new(error: str | None, status: int, values: dict[str, str] | None = None) -> Any:
    return render_template(
        "visits/new.html",
        error=error,
        values=values or {},
        slots=[(slot, *slot.split("_")) for slot in SLOTS],
        field_names=FIELD_NAMES,
        fixed_site=current_user.site,
    ), status


@bp.route("/visits/new", methods=["GET", "POST"])
@login_required
def new_visit() -> Any:
    if not can_upload(current_user):
        abort(403)
    if request.method == "GET":
        return _render_new(None, 200)
    try:
        files = list(request.files.items(multi=True))
        values = {k: request.form.get(k, "") for k in ("patient_id", "visit_date", "site")}
    except RequestEntityTooLarge:
        return _render_new(too_large_message(), 413)
    try:
        visit = create_visit(
            session(),
            current_user,
            iter_uploads(files),
            pseudonym=values["patient_id"],
            visit_date=values["visit_date"],
            site=values["site"],
        )
    except RetinascreenError as exc:
        return _render_new(str(exc), exc.status, values)
    return redirect(url_for("visits.show", public_id=visit.public_id), code=303)


@bp.get("/visits")
@login_required
def list_visits() -> Any:
    page = page_number()
    per_page = current_app.config["HISTORY_PAGE_SIZE"]
    rows, total = visits_page(session(), current_user, page=page, per_page=per_page)
    pages = page_count(total, per_page)
    items = [(visit, outcome_of(visit)) for visit in rows]
    return render_template("visits/list.html", items=items, page=page, pages=pages, total=total)


@bp.get("/visits/<public_id>")
@login_required
def show(public_id: str) -> Any:
    visit = _visit(public_id)
    return render_template(
        "visits/show.html",
        visit=visit,
        outcome=outcome_of(visit),
        photos=eyes_photos(visit),
        field_names=FIELD_NAMES,
        item=open_item(visit),
        reviewer=can_review(current_user),
        policy=policy(),
    )


@bp.get("/visits/<public_id>/photos/<int:photo_id>/<any(photo, heatmap, vessels, lesions):what>")
@login_required
def photo_file(public_id: str, photo_id: int, what: str) -> Response:
    """A visit's photo, or its heat map or vessel / lesion overlay (404 where there is none)."""
    from retinascreen.web.screenings import send_stored

    photo = photo_of(_visit(public_id), photo_id)
    if photo is None:
        abort(404)
    return send_stored(getattr(photo, f"{what}_name"))


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "private, no-store",
        },
    )


@bp.get("/visits/<public_id>/letter.pdf")
@login_required
def letter(public_id: str) -> Response:
    from retinascreen.web.letters import patient_letter

    visit = _visit(public_id)
    return _pdf(patient_letter(visit, outcome_of(visit), policy()), "letter.pdf")


@bp.get("/visits/<public_id>/report.pdf")
@login_required
def visit_report(public_id: str) -> Response:
    from retinascreen.web.letters import clinical_report

    visit = _visit(public_id)
    store = current_app.extensions["retinascreen.photos"]
    pdf = clinical_report(visit, outcome_of(visit), store, user=current_user.username)
    return _pdf(pdf, "visit-report.pdf")


# -- graders --------------------------------------------------------------------------------------
@bp.get("/review")
@login_required
def review_queue() -> Any:
    if not can_review(current_user):
        abort(403)
    items = queue(session())
    return render_template("visits/queue.html", items=items)


@bp.route("/review/<public_id>", methods=["GET", "POST"])
@login_required
def review(public_id: str) -> Any:
    if not can_review(current_user):
        abort(403)
    visit = _visit(public_id)
    outcome = outcome_of(visit)
    error = None
    if request.method == "POST":
        try:
            decisions = _form_decisions([e.eye for e in outcome.eyes])
            record_review(
                session(), current_user, visit, decisions, request.form.get("note", "").strip()
            )
        except RetinascreenError as exc:
            error = str(exc)
        else:
            flash("Review saved: the outcome now uses your grades.", "success")
            return redirect(url_for("visits.show", public_id=visit.public_id), code=303)
    return render_template(
        "visits/review.html",
        visit=visit,
        outcome=outcome,
        photos=eyes_photos(visit),
        field_names=FIELD_NAMES,
        item=open_item(visit),
        error=error,
    ), (400 if error else 200)


def _form_decisions(eyes: list[str]) -> dict[str, EyeDecision]:
    """The review form's fields ``<eye>_grade`` (0-4 or ``ungradable``), ``<eye>_maculopathy``
    and ``<eye>_retake`` (``yes``/``no``)."""
    decisions = {}
    for eye in eyes:
        value = request.form.get(f"{eye}_grade", "")
        if value == "":
            continue
        gradable = value != "ungradable"
        data = {
            "gradable": gradable,
            "grade": int(value) if gradable and value.isdigit() else (None if not gradable else -1),
            "maculopathy": request.form.get(f"{eye}_maculopathy") == "yes",
            "retake": request.form.get(f"{eye}_retake") == "yes",
        }
        decisions[eye] = clean_decision(eye, data)
    return decisions


# -- agreement ------------------------------------------------------------------------------------
@bp.get("/agreement")
@login_required
def agreement_page() -> Any:
    from retinascreen.web.agreement import agreement_report

    if role_of(current_user) not in ("grader", "admin"):
        abort(403)
    return render_template("visits/agreement.html", report=agreement_report(session()))


@bp.get("/agreement.csv")
@login_required
def agreement_csv() -> Response:
    from retinascreen.web.agreement import agreement_report, write_csv

    if role_of(current_user) not in ("grader", "admin"):
        abort(403)
    buffer = io.StringIO()
    write_csv(agreement_report(session()), buffer)
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="agreement.csv"',
            "Cache-Control": "private, no-store",
        },
    )


__all__ = ["EYES", "bp"]
