"""The OpenAPI 3.1 document of ``/api/v1`` (a test checks it against the app's routes)."""

from __future__ import annotations

from typing import Any

from retinascreen import __version__
from retinascreen.grading import LABELS
from retinascreen.web.handlers import MAX_ID, MAX_PER_PAGE
from retinascreen.web.inputs import PATIENT_ID_MAX, PATIENT_ID_PATTERN
from retinascreen.web.openapi_responses import error_response, json_response, page_parameters

_UNAVAILABLE = error_response("Database unavailable (answered with Retry-After)")
_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_ID = {"name": "screening_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_TOKEN_ID = {"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer"}}
_PATIENT_ID = {
    "type": "string",
    "maxLength": PATIENT_ID_MAX,
    "pattern": PATIENT_ID_PATTERN,
    "description": "no control or invisible characters; surrounding spaces are trimmed",
}
_TEXT = "No text may contain a NUL byte or a lone surrogate (400)."
_NO_NUL = "^[^\\x00]*$"

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Credentials": {
        "type": "object",
        "required": ["username", "password"],
        "properties": {
            "username": {"type": "string", "minLength": 1, "pattern": _NO_NUL},
            "password": {"type": "string", "minLength": 1, "pattern": _NO_NUL},
        },
    },
    "Token": {
        "type": "object",
        "required": ["token", "id"],
        "properties": {
            "token": {"type": "string", "description": "send as 'Authorization: Bearer <token>'"},
            "id": {"type": "integer"},
            "token_type": {"const": "Bearer"},
            "expires": {
                "type": "string",
                "format": "date-time",
                "description": "TOKEN_LIFETIME_SECONDS after creation (default 24 h)",
            },
        },
    },
    "Screening": {
        "type": "object",
        "required": [
            "id",
            "grade",
            "label",
            "probabilities",
            "referable",
            "referable_probability",
            "gradable",
            "quality",
            "model",
        ],
        "properties": {
            "id": {"type": "integer"},
            "created": {"type": "string", "format": "date-time"},
            "patient_id": {"type": ["string", "null"]},
            "eye": {"enum": ["left", "right", None]},
            "grade": {"type": "integer", "minimum": 0, "maximum": 4},
            "label": {"enum": list(LABELS)},
            "probabilities": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 5,
                "maxItems": 5,
            },
            "referable": {"type": "boolean", "description": "grade >= 2"},
            "referable_probability": {"type": "number"},
            "gradable": {"type": "boolean"},
            "quality": {
                "type": "object",
                "properties": {
                    "score": {"type": "number"},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "measures": {"type": "object", "additionalProperties": {"type": "number"}},
                    "label": {
                        "type": "string",
                        "enum": ["good", "usable", "reject"],
                        "description": "EyeQ's three-way quality scale",
                    },
                },
            },
            "model": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "sha256": {"type": "string"},
                },
            },
            "referral_rule": {
                "type": ["object", "null"],
                "description": "the model's referral threshold (referable when "
                "referable_probability >= threshold) and the sensitivity it was chosen for; "
                "null when referable means grade >= 2",
                "properties": {
                    "threshold": {"type": "number"},
                    "target_sensitivity": {"type": ["number", "null"]},
                },
            },
            "referral_note": {
                "type": ["string", "null"],
                "description": "one sentence on why the referral decision and the grade "
                "disagree; null when they agree",
            },
            "model_card": {
                "type": "object",
                "description": "summary of the model card at screening time (architecture, "
                "training data, validation metrics, intended use)",
            },
            "synthetic": {"type": "boolean"},
            "warning": {"type": "string"},
            "heatmap": {
                "type": ["string", "null"],
                "description": "URL of the heat map PNG (Grad-CAM); null when there is none",
            },
            "masks": {
                "type": "object",
                "description": "URLs of the vessel and lesion overlay PNGs; null where absent",
                "properties": {
                    "vessels": {"type": ["string", "null"]},
                    "lesions": {"type": ["string", "null"]},
                },
            },
            "segmentation": {
                "type": "object",
                "description": "vessel_density (share of the field of view that is vessel), "
                "lesion_areas (share per lesion type) and the segmentation models used; "
                "absent when no segmentation model ran",
                "properties": {
                    "vessel_density": {"type": "number"},
                    "lesion_areas": {
                        "type": "object",
                        "additionalProperties": {"type": "number"},
                    },
                    "models": {"type": "object"},
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "version"],
        "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "version", "checks"],
        "properties": {
            "status": {"enum": ["ready", "not ready"]},
            "version": {"type": "string"},
            "checks": {
                "type": "object",
                "description": "database (reachable), schema (at the Alembic head), model (loaded)",
                "additionalProperties": {
                    "type": "object",
                    "required": ["ok"],
                    "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                },
            },
        },
    },
    "ScreeningPage": {
        "type": "object",
        "properties": {
            "screenings": {"type": "array", "items": {"$ref": "#/components/schemas/Screening"}},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
}

PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/tokens": {
        "post": {
            "summary": "Exchange a username and password for a bearer token",
            "operationId": "createToken",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Credentials"}}
                },
            },
            "responses": {
                "201": json_response("Token", "The token (shown once; only its hash is stored)"),
                "400": error_response(f"Missing username or password. {_TEXT}"),
                "401": error_response("Wrong username or password"),
                "429": error_response(
                    "Too many failed sign-ins or new tokens; the Retry-After header says how "
                    "many seconds to wait"
                ),
                "503": _UNAVAILABLE,
            },
        }
    },
    "/api/v1/tokens/refresh": {
        "post": {
            "summary": "Exchange the bearer token for a new one (the old one is revoked)",
            "operationId": "refreshToken",
            "security": _AUTH,
            "responses": {
                "201": json_response("Token", "The new token (shown once)"),
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "429": error_response("Too many new tokens this hour; see Retry-After"),
                "503": _UNAVAILABLE,
            },
        }
    },
    "/api/v1/tokens/current": {
        "delete": {
            "summary": "Revoke the token used for this request",
            "operationId": "revokeCurrentToken",
            "security": _AUTH,
            "responses": {
                "204": {"description": "Revoked"},
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "503": _UNAVAILABLE,
            },
        }
    },
    "/api/v1/tokens/{token_id}": {
        "delete": {
            "summary": "Revoke one of your tokens by id",
            "operationId": "revokeToken",
            "security": _AUTH,
            "parameters": [_TOKEN_ID],
            "responses": {
                "204": {"description": "Revoked"},
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "404": error_response("No such token of yours"),
                "503": _UNAVAILABLE,
            },
        }
    },
    "/api/v1/screenings": {
        "get": {
            "summary": "Your screenings, newest first",
            "operationId": "listScreenings",
            "security": _AUTH,
            "parameters": [
                *page_parameters(),
                {
                    "name": "patient_id",
                    "in": "query",
                    "schema": _PATIENT_ID,
                    "description": "substring of the patient id (case-insensitive)",
                },
            ],
            "responses": {
                "200": json_response("ScreeningPage", "One page of screenings"),
                "400": error_response(
                    f"page not a whole number from 1 to {MAX_ID}, per_page not 1 to "
                    f"{MAX_PER_PAGE}, or a bad patient id"
                ),
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "503": _UNAVAILABLE,
            },
        },
        "post": {
            "summary": "Grade a fundus photograph and store the screening",
            "operationId": "createScreening",
            "security": _AUTH,
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["image"],
                            "properties": {
                                "image": {
                                    "type": "string",
                                    "contentMediaType": "application/octet-stream",
                                    "minLength": 1,
                                },
                                "patient_id": _PATIENT_ID,
                                "eye": {"enum": ["left", "right"]},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_response("Screening", "The prediction result with its id"),
                "400": error_response("No image field, or a bad patient id / eye"),
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "408": error_response("The request body arrived too slowly"),
                "413": error_response("File, form field or pixel count over the limit"),
                "415": error_response("Unsupported image format"),
                "422": error_response(
                    "Not an image, empty, truncated, abnormally encoded (e.g. a JPEG with "
                    "hundreds of scans), or not a fundus photograph"
                ),
                "499": error_response("The client closed the connection: nothing was stored"),
                "503": _UNAVAILABLE,
                "507": error_response(
                    "The server's storage is full: nothing was stored (Retry-After)"
                ),
            },
        },
    },
    "/api/v1/screenings/{screening_id}": {
        "get": {
            "summary": "One of your screenings",
            "operationId": "getScreening",
            "security": _AUTH,
            "parameters": [_ID],
            "responses": {
                "200": json_response("Screening", "The screening"),
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "404": error_response("No such screening of yours"),
                "503": _UNAVAILABLE,
            },
        }
    },
    **{
        f"/api/v1/screenings/{{screening_id}}/{image}.png": {
            "get": {
                "summary": summary,
                "operationId": operation,
                "security": _AUTH,
                "parameters": [_ID],
                "responses": {
                    "200": {"description": "PNG image", "content": {"image/png": {}}},
                    "401": error_response("No valid token"),
                    "404": error_response("No such screening of yours, or it has no such image"),
                },
            }
        }
        for image, operation, summary in (
            ("heatmap", "getHeatmap", "The heat map (Grad-CAM) of one of your screenings"),
            ("vessels", "getVessels", "The vessel overlay of one of your screenings"),
            ("lesions", "getLesions", "The lesion overlay of one of your screenings"),
        )
    },
    "/api/v1/screenings/{screening_id}/fhir": {
        "get": {
            "summary": "One of your screenings as FHIR R4 (a Bundle: DiagnosticReport and "
            "Observations of DR grade, gradability, maculopathy and the recommendation)",
            "operationId": "getScreeningFhir",
            "security": _AUTH,
            "parameters": [_ID],
            "responses": {
                "200": {
                    "description": "FHIR R4 Bundle (type collection), SNOMED CT and LOINC coded",
                    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
                },
                "401": error_response("No valid token (unknown, revoked or expired)"),
                "404": error_response("No such screening of yours"),
                "503": _UNAVAILABLE,
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers (no database, no model)",
            "operationId": "healthz",
            "responses": {"200": json_response("Health", "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: database reachable, schema at head, model loaded",
            "operationId": "readyz",
            "responses": {
                "200": json_response("Readiness", "Ready to serve"),
                "503": json_response("Readiness", "Not ready; see the failing checks"),
            },
        }
    },
}


def _with_visits() -> None:
    """The visit routes' paths and schemas (``visit_openapi.py``) join the document."""
    from retinascreen.web.visit_openapi import PATHS as VISIT_PATHS
    from retinascreen.web.visit_openapi import SCHEMAS as VISIT_SCHEMAS

    PATHS.update(VISIT_PATHS)
    _SCHEMAS.update(VISIT_SCHEMAS)


_with_visits()


def openapi_document(server_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 description of the REST API."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "retinascreen API",
            "version": __version__,
            "description": "Diabetic retinopathy screening of colour fundus photographs "
            "(ICDR grades 0-4). Results from the demo model are synthetic-trained: not for "
            "clinical use.",
        },
        "servers": [{"url": server_url or "/"}],
        "paths": PATHS,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
