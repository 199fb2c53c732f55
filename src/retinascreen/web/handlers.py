"""Error answers and input guards: every failure is a clear 4xx/503, a 500 carries a reference.

API paths (``/api/...``) answer JSON ``{"error": ...}``; pages render ``error.html``.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request
from flask.json.provider import DefaultJSONProvider
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import BadRequest, HTTPException, InternalServerError
from werkzeug.routing import IntegerConverter, Map

from retinascreen.web.inputs import refuse_bad_text
from retinascreen.web.writable import READ_ONLY_MESSAGE, STORAGE_FULL_MESSAGE, write_failure

log = logging.getLogger(__name__)

MAX_ID = 2**31 - 1
"""Largest id or page number accepted (a 32-bit signed integer, as in every database)."""
_WHOLE = re.compile(r"-?[0-9]{1,20}")
RETRY_AFTER_SECONDS = 5
STORAGE_RETRY_AFTER_SECONDS = 60
"""A full disk needs a person to free space: clients should not retry every few seconds."""
DATABASE_UNAVAILABLE = "Database unavailable: try again in a few seconds."

_MESSAGES = {
    404: "Not found.",
    405: "That method is not allowed here.",
    408: "The request body arrived too slowly; send it again.",
}


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` that matches 0..2**31-1 only, so a huge id is 404, not an overflow."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


class SafeJSONProvider(DefaultJSONProvider):
    """JSON whose nesting exceeds Python's recursion limit is invalid JSON (400), not a crash."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def page_number(name: str = "page", *, default: int = 1, maximum: int = MAX_ID) -> int:
    """A whole number 1..``maximum`` from the query string (``default`` when absent); anything
    else (empty, ``null``, ``1.5``, ``0``, too large) is 400 with the allowed range."""
    raw = request.args.get(name)
    if raw is None:
        return default
    value = int(raw) if _WHOLE.fullmatch(raw) else 0
    if not 1 <= value <= maximum:
        raise BadRequest(f"{name} must be a whole number from 1 to {maximum}.")
    return value


PER_PAGE_DEFAULT, MAX_PER_PAGE = 20, 100
"""The API's list pages: rows a page unless ``per_page`` says, and the most it may say."""


def per_page_number() -> int:
    """The API's ``per_page`` query parameter (:data:`PER_PAGE_DEFAULT` when absent)."""
    return page_number("per_page", default=PER_PAGE_DEFAULT, maximum=MAX_PER_PAGE)


def page_count(total: int, per_page: int) -> int:
    """How many pages ``total`` rows fill at ``per_page`` a page (at least one, even empty)."""
    return max((total + per_page - 1) // per_page, 1)


def too_large_message() -> str:
    """Why a request was refused with 413: a too-large form field or a too-large file."""
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if limit is not None and length is not None and length <= limit:
        field_limit = request.max_form_memory_size or 0
        return f"A form field is too large: the limit is {field_limit / 1000:.0f} kB."
    return f"The file is too large: the limit is {limit / 1_048_576:.0f} MB."


def wants_json() -> bool:
    """Whether the answer should be JSON (the REST API) rather than a page."""
    return request.path.startswith("/api/")


def _answer(message: str, code: int, headers: dict[str, str] | None = None, **extra: Any) -> Any:
    if wants_json():
        response = jsonify(error=message, **extra)
    else:
        if "_login_user" not in g and code >= 500:
            # The signed-in user cannot be loaded while the database is down: render as anonymous.
            g._login_user = current_app.login_manager.anonymous_user()  # type: ignore[attr-defined]
        response = current_app.make_response(
            render_template("error.html", code=code, message=message)
        )
    response.status_code = code
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _storage_full() -> Any:
    """507 Insufficient Storage with ``Retry-After``: the upload or change was not saved."""
    return _answer(STORAGE_FULL_MESSAGE, 507, {"Retry-After": str(STORAGE_RETRY_AFTER_SECONDS)})


def init_app(app: Flask) -> None:
    """Install the guards and error handlers (call before registering blueprints)."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.json = SafeJSONProvider(app)
    app.before_request(refuse_bad_text)  # NUL bytes and lone surrogates: 400, never 500

    @app.errorhandler(CSRFError)
    def _csrf_error(exc: CSRFError) -> Any:
        message = "The form expired or was not sent by this site. Reload the page and try again."
        return _answer(message, 400)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        if code == 413:
            message = too_large_message()
        else:
            message = _MESSAGES.get(code) or exc.description or exc.name
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        if code == 408:
            headers["Connection"] = "close"
        return _answer(message, code, headers)

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError) -> Any:
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc.orig)
        failure = write_failure(exc)
        if failure == "disk_full":
            return _storage_full()
        message = READ_ONLY_MESSAGE if failure == "read_only" else DATABASE_UNAVAILABLE
        return _answer(message, 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})

    @app.errorhandler(OSError)
    def _storage_error(exc: OSError) -> Any:
        """A full disk (ENOSPC, EDQUOT) is 507 with Retry-After; any other OSError stays a 500."""
        if write_failure(exc) != "disk_full":
            raise exc
        log.error("storage full on %s %s: %s", request.method, request.path, exc)
        return _storage_full()

    @app.errorhandler(InternalServerError)
    def _internal_error(exc: InternalServerError) -> Any:
        reference = uuid.uuid4().hex[:12]
        original = exc.original_exception or exc
        log.error(
            "internal error %s on %s %s",
            reference,
            request.method,
            request.path,
            exc_info=(type(original), original, original.__traceback__),
        )
        message = f"Internal error (reference {reference}). It has been logged."
        return _answer(message, 500, reference=reference) if wants_json() else _answer(message, 500)
