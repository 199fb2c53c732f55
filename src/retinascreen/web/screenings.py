"""Screening pages: upload, result, history, photo/heat-map/overlay files and the PDF report."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask_login import current_user, login_required
from werkzeug.exceptions import RequestEntityTooLarge

from retinascreen.data.fundus import explain_reasons
from retinascreen.errors import RetinascreenError
from retinascreen.result import SYNTHETIC_WARNING
from retinascreen.serving.anatomy import laterality_note
from retinascreen.web.access import history_page, owned_screening
from retinascreen.web.db import session
from retinascreen.web.forms import UploadForm
from retinascreen.web.handlers import page_count, page_number, too_large_message
from retinascreen.web.models import Screening
from retinascreen.web.segmentation import lesion_legend, lesion_note
from retinascreen.web.service import get_predictor, model_is_synthetic, screen_upload

bp = Blueprint("screenings", __name__, url_prefix="/screenings")


@bp.record_once
def _template_globals(state: BlueprintSetupState) -> None:
    # The text of the synthetic-model banner (templates/_macros.html), one spelling everywhere.
    state.app.jinja_env.globals["synthetic_warning_text"] = SYNTHETIC_WARNING


def own_screening(screening_id: int) -> Screening:
    """The signed-in user's screening, or 404 (also for another user's: ids are not revealed)."""
    screening = owned_screening(session(), current_user, screening_id)
    if screening is None:
        abort(404)
    return screening


def _render_form(form: UploadForm, error: str | None, status: int) -> Any:
    predictor = get_predictor()
    return render_template(
        "screenings/new.html",
        form=form,
        error=error,
        synthetic=model_is_synthetic(predictor),
        notice=predictor.model_info.notice,
    ), status


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    try:
        form = UploadForm()
        submitted = form.validate_on_submit()
    except RequestEntityTooLarge:
        return _render_form(UploadForm(formdata=None), too_large_message(), 413)
    if not submitted:
        return _render_form(form, None, 400 if form.is_submitted() else 200)
    upload = form.image.data
    try:
        screening = screen_upload(
            session(),
            current_user,
            upload.read(),
            filename=upload.filename,
            patient_id=form.patient_id.data,
            eye=form.eye.data,
        )
    except RetinascreenError as exc:
        return _render_form(form, str(exc), exc.status)
    return redirect(url_for("screenings.show", screening_id=screening.id), code=303)


@bp.get("")
@login_required
def history() -> Any:
    query = (request.args.get("q") or "").strip()[:64]
    page = page_number()
    per_page = current_app.config["HISTORY_PAGE_SIZE"]
    rows, total = history_page(session(), current_user, patient=query, page=page, per_page=per_page)
    pages = page_count(total, per_page)
    return render_template(
        "screenings/history.html",
        rows=rows,
        query=query,
        page=page,
        pages=pages,
        total=total,
        synthetic=any(row.synthetic for row in rows),
    )


@bp.get("/<int:screening_id>")
@login_required
def show(screening_id: int) -> Any:
    screening = own_screening(screening_id)
    result = screening.prediction
    card = screening.model_card
    segmentation = screening.result.get("segmentation") or {}
    graded_by = dataclasses.replace(
        result.model,
        training_data=str(card.get("training_data") or ""),
        intended_use=str(card.get("intended_use") or ""),
        calibration=str(card.get("calibration") or ""),
    )
    return render_template(
        "screenings/show.html",
        s=screening,
        result=result,
        quality_advice=explain_reasons(result.quality.reasons),
        notice=graded_by.notice,
        segmentation=segmentation,
        lesion_note=lesion_note(segmentation),
        lesion_legend=lesion_legend(segmentation),
        laterality_note=laterality_note(screening.eye, result.anatomy),
    )


def send_stored(name: str | None) -> Response:
    if not name:
        abort(404)
    path = current_app.extensions["retinascreen.photos"].path(name)
    if not path.is_file():
        abort(404)
    response = send_file(path, max_age=0)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.get("/<int:screening_id>/photo")
@login_required
def photo(screening_id: int) -> Response:
    return send_stored(own_screening(screening_id).photo_name)


@bp.get("/<int:screening_id>/heatmap.png")
@login_required
def heatmap(screening_id: int) -> Response:
    return send_stored(own_screening(screening_id).heatmap_name)


@bp.get("/<int:screening_id>/vessels.png")
@login_required
def vessels(screening_id: int) -> Response:
    return send_stored(own_screening(screening_id).vessels_name)


@bp.get("/<int:screening_id>/lesions.png")
@login_required
def lesions(screening_id: int) -> Response:
    return send_stored(own_screening(screening_id).lesions_name)


@bp.get("/<int:screening_id>/report.pdf")
@login_required
def report(screening_id: int) -> Response:
    from retinascreen.web.report import ReportCache

    screening = own_screening(screening_id)
    store = current_app.extensions["retinascreen.photos"]
    reports: ReportCache = current_app.extensions.setdefault("retinascreen.reports", ReportCache())
    pdf = reports.report(screening, store, user=current_user.username)
    return Response(
        pdf,
        mimetype="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="screening-{screening.id}.pdf"',
            "Cache-Control": "private, no-store",
        },
    )
