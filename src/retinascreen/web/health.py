"""``/healthz`` (liveness: the process answers) and ``/readyz`` (readiness: it can serve).

A load balancer restarts on a failing ``/healthz`` and stops routing on a failing ``/readyz``.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import Engine, text

from retinascreen import __version__
from retinascreen.web.db import schema_revision

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Liveness: no database, no model; 200 while the worker can answer at all."""
    return jsonify(status="ok", version=__version__)


@bp.get("/readyz")
def readyz() -> Any:
    """Readiness: database reachable and writable, schema at the Alembic head, photos can be
    saved (the disk is not full), model loaded (200 or 503)."""
    engine: Engine = current_app.extensions["retinascreen.engine"]
    checks = {"database": _database(engine), "schema": _schema(engine), "model": _model()}
    checks["writable"] = _writable(engine) if checks["database"]["ok"] else {"ok": False}
    ready = all(check["ok"] for check in checks.values())
    response = jsonify(status="ready" if ready else "not ready", version=__version__, checks=checks)
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    if not ready:
        response.headers["Retry-After"] = "5"
    return response


def _database(engine: Engine) -> dict[str, Any]:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        return _failed("database", "database unreachable", exc)
    return {"ok": True}


def _schema(engine: Engine) -> dict[str, Any]:
    try:
        current, head = schema_revision(engine)
    except Exception as exc:
        return _failed("schema", "schema revision unreadable", exc)
    if current != head:
        return {"ok": False, "revision": current, "head": head, "detail": "schema is not at head"}
    return {"ok": True, "revision": current}


def _writable(engine: Engine) -> dict[str, Any]:
    """A database write (rolled back) and a one-byte file in the photo folder both succeed."""
    from retinascreen.web.writable import database_write_problem, folder_write_problem

    try:
        problem = database_write_problem(engine) or folder_write_problem(
            current_app.extensions["retinascreen.photos"].folder
        )
    except Exception as exc:
        return {"ok": False, "detail": _first_line(exc)}
    return {"ok": False, "detail": problem} if problem else {"ok": True}


def _model() -> dict[str, Any]:
    predictor = current_app.extensions.get("retinascreen.predictor")
    if predictor is None:
        return {"ok": False, "detail": "model not loaded yet"}
    return {"ok": True, "name": predictor.model_info.name}


def _failed(check: str, reason: str, exc: BaseException) -> dict[str, Any]:
    """A failed check: a generic reason in the (public) answer, the error text in the log only
    (it can name the database host, port, user or file)."""
    log.warning("readyz: %s check failed: %s", check, _first_line(exc))
    return {"ok": False, "detail": reason}


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0][:200]
