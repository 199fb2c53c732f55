"""Text input guard: NUL bytes and lone surrogates are refused at the boundary (400).

Neither can be stored (PostgreSQL refuses NUL in text; no database can encode a lone UTF-16
surrogate). :func:`text_problem` says what is wrong with a string; :func:`refuse_bad_text`
applies it, before any view runs, to every query-string value and every form field, and the
JSON endpoint (``POST /api/v1/tokens``) applies it to the strings it reads. The first bad one
answers 400 with the field's name (JSON for the API, the error page for the web).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flask import request
from werkzeug.exceptions import BadRequest

from retinascreen.errors import RetinascreenError

_BAD = re.compile("[\x00\ud800-\udfff]")

PATIENT_ID_MAX = 64
PATIENT_ID_PATTERN = (
    r"^[^\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    r"\ufeff\ufff9-\ufffb]*$"
)
"""What a patient id may hold (the OpenAPI document publishes the same pattern): any character
but control characters, line and paragraph separators, and invisible formatting (zero-width,
bidirectional overrides, soft hyphen), which would make two ids look alike."""
PATIENT_ID_RE = re.compile(PATIENT_ID_PATTERN)


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be accepted as text (a NUL byte, a lone surrogate), else None."""
    match = _BAD.search(value)
    if match is None:
        return None
    if match.group() == "\x00":
        return "contains a NUL byte (character 0)"
    return "contains an invalid character (a lone UTF-16 surrogate)"


def _inputs() -> Iterator[tuple[str, str]]:
    for key, value in request.args.items(multi=True):
        yield "a parameter name", key
        yield key, value
    form = request.mimetype == "application/x-www-form-urlencoded"
    if form or not request.path.startswith("/api/"):  # pages: CSRF has parsed the form already
        for key, value in request.form.items(multi=True):
            yield "a field name", key
            yield key, value


def refuse_bad_text() -> None:
    """``before_request`` hook: 400 when any text input has a NUL byte or a lone surrogate.

    API multipart fields (uploads) are left to their view, which checks them itself (the
    patient id allows printable characters only), so an upload refused for its token is not
    read here.
    """
    for name, value in _inputs():
        problem = text_problem(value)
        if problem:
            shown = name if name.isprintable() and not text_problem(name) else "a field"
            raise BadRequest(f"Bad input: {shown[:64]} {problem}. Remove it and try again.")


def clean_patient_id(value: str | None) -> str | None:
    """Trimmed patient id or None; a 400 error when over 64 characters or with control or
    invisible characters (checked before trimming, as the OpenAPI document says)."""
    value = value or ""
    if len(value) > PATIENT_ID_MAX or not PATIENT_ID_RE.fullmatch(value):
        raise RetinascreenError(
            f"Patient id must be at most {PATIENT_ID_MAX} printable characters "
            "(no control or invisible characters)."
        )
    return value.strip() or None
