"""REST API under ``/api/v1`` with bearer tokens (see ``openapi.py`` for the document)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from retinascreen.errors import RetinascreenError
from retinascreen.web.access import history_page, owned_screening
from retinascreen.web.db import session
from retinascreen.web.handlers import page_number, per_page_number, too_large_message
from retinascreen.web.inputs import clean_patient_id, text_problem
from retinascreen.web.limits import Refused, take, token_limits
from retinascreen.web.models import ApiToken, User, utcnow
from retinascreen.web.openapi import openapi_document
from retinascreen.web.security import (
    DISABLED_MESSAGE,
    audit,
    find_token,
    issue_token,
    rate_limit_message,
    sign_in,
    token_expires,
)
from retinascreen.web.service import screen_upload

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def error(message: str, status: int) -> Any:
    """A JSON error answer ``{"error": message}``."""
    response = jsonify(error=message)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="retinascreen"'
    return response


def created(payload: dict[str, Any], location: str | None = None) -> Any:
    """201 with ``payload`` as JSON, and ``Location`` where the new resource is."""
    response = jsonify(payload)
    response.status_code = 201
    if location is not None:
        response.headers["Location"] = location
    return response


def limited(refused: Refused) -> Any:
    """429 with ``Retry-After``."""
    response = error(rate_limit_message(refused), 429)
    response.headers["Retry-After"] = str(refused.retry_after)
    return response


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Require ``Authorization: Bearer <token>``; sets ``g.api_user`` and ``g.api_token``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return error("Missing bearer token: send 'Authorization: Bearer <token>'.", 401)
        db = session()
        token, user, why = find_token(db, secret.strip())
        if token is None or user is None:  # unknown, revoked, expired, account gone/disabled
            return error(why, 401)
        if request.method not in ("GET", "HEAD"):  # reads never write (no lock waits)
            token.last_used = utcnow()
            db.commit()
        g.api_token = token
        g.api_user = user
        return view(*args, **kwargs)

    return wrapper


@bp.post("/tokens")
def create_token() -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error('Send JSON {"username": "...", "password": "..."}.', 400)
    username, password = body.get("username"), body.get("password")
    if (
        not isinstance(username, str)
        or not isinstance(password, str)
        or not username
        or not password
    ):
        return error("username and password are required strings.", 400)
    for name, value in (("username", username), ("password", password)):
        problem = text_problem(value)
        if problem:
            return error(f"Bad input: {name} {problem}.", 400)
    db = session()
    user = sign_in(db, username, password, via="api")
    if isinstance(user, Refused):
        return limited(user)
    if user is None or not user.is_active:
        db.commit()
        return error("Wrong username or password." if user is None else DISABLED_MESSAGE, 401)
    return _new_token(user)


def _new_token(user: User, *, replacing: ApiToken | None = None) -> Any:
    """201 with a new token for ``user`` (at most ``TOKEN_CREATE_LIMIT`` an hour)."""
    db = session()
    refused = take(token_limits(user.id))
    if isinstance(refused, Refused):
        db.commit()
        return limited(refused)
    if replacing is not None:
        replacing.revoked = utcnow()
    token, secret = issue_token(db, user)
    detail = f"token {token.id}" + (f" replaces {replacing.id}" if replacing else "")
    audit(db, "token_refreshed" if replacing else "token_created", user=user, detail=detail)
    db.commit()
    expires = token_expires(token).isoformat()
    return jsonify(token=secret, id=token.id, token_type="Bearer", expires=expires), 201


@bp.post("/tokens/refresh")
@token_required
def refresh_token() -> Any:
    """A new token for the bearer; the one sent is revoked."""
    return _new_token(g.api_user, replacing=g.api_token)


def _revoke(token: ApiToken) -> Any:
    db = session()
    token.revoked = utcnow()
    audit(db, "token_revoked", user=g.api_user, detail=f"token {token.id}")
    db.commit()
    return "", 204


@bp.delete("/tokens/current")
@token_required
def revoke_current_token() -> Any:
    return _revoke(g.api_token)


@bp.delete("/tokens/<int:token_id>")
@token_required
def revoke_token(token_id: int) -> Any:
    token = session().get(ApiToken, token_id)
    if token is None or token.user_id != g.api_user.id or token.revoked is not None:
        return error("No such token.", 404)
    return _revoke(token)


@bp.post("/screenings")
@token_required
def create_screening() -> Any:
    try:
        upload = request.files.get("image")
        patient_id = request.form.get("patient_id")
        eye = request.form.get("eye")
    except RequestEntityTooLarge:
        return error(too_large_message(), 413)
    if upload is None:
        return error("Send the photograph as multipart form field 'image'.", 400)
    try:
        screening = screen_upload(
            session(),
            g.api_user,
            upload.read(),
            filename=upload.filename,
            patient_id=patient_id,
            eye=eye,
        )
    except RetinascreenError as exc:
        return error(str(exc), exc.status)
    return created(screening.to_api(), f"/api/v1/screenings/{screening.id}")


@bp.get("/screenings")
@token_required
def list_screenings() -> Any:
    page = page_number()
    per_page = per_page_number()
    try:
        patient = clean_patient_id(request.args.get("patient_id"))
    except RetinascreenError as exc:
        return error(str(exc), exc.status)
    rows, total = history_page(
        session(), g.api_user, patient=patient or "", page=page, per_page=per_page
    )
    return jsonify(
        screenings=[row.to_api() for row in rows], page=page, per_page=per_page, total=total
    )


@bp.get("/screenings/<int:screening_id>")
@token_required
def get_screening(screening_id: int) -> Any:
    screening = owned_screening(session(), g.api_user, screening_id)
    if screening is None:
        return error("No such screening.", 404)
    return jsonify(screening.to_api())


def _screening_image(screening_id: int, image: str) -> Any:
    """The heat map or the vessel / lesion overlay of one of your screenings (PNG)."""
    from retinascreen.web.screenings import send_stored

    screening = owned_screening(session(), g.api_user, screening_id)
    if screening is None:
        return error("No such screening.", 404)
    name = getattr(screening, f"{image}_name")
    if not name:
        return error(f"This screening has no {image} image.", 404)
    return send_stored(name)


@bp.get("/screenings/<int:screening_id>/heatmap.png")
@token_required
def screening_heatmap(screening_id: int) -> Any:
    return _screening_image(screening_id, "heatmap")


@bp.get("/screenings/<int:screening_id>/vessels.png")
@token_required
def screening_vessels(screening_id: int) -> Any:
    return _screening_image(screening_id, "vessels")


@bp.get("/screenings/<int:screening_id>/lesions.png")
@token_required
def screening_lesions(screening_id: int) -> Any:
    return _screening_image(screening_id, "lesions")


@bp.get("/screenings/<int:screening_id>/fhir")
@token_required
def screening_fhir(screening_id: int) -> Any:
    """The screening as a FHIR R4 Bundle: DiagnosticReport plus one Observation per finding."""
    from retinascreen.serving.fhir import diagnostic_report_bundle
    from retinascreen.web.results import visit_results

    screening = owned_screening(session(), g.api_user, screening_id)
    if screening is None:
        return error("No such screening.", 404)
    response = jsonify(diagnostic_report_bundle(visit_results(screening)))
    response.mimetype = "application/fhir+json"
    return response


@bp.get("/openapi.json")
def openapi() -> Any:
    # Never the request's Host header (spoofable): the configured public URL, else relative.
    public = str(current_app.config.get("PUBLIC_URL") or "").rstrip("/")
    return jsonify(openapi_document(public or "/"))
