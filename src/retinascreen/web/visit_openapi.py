"""The OpenAPI paths and schemas of the visit routes (``visit_api.py``), merged into the API's
document by ``openapi.py``."""

from __future__ import annotations

from typing import Any

from retinascreen.web.handlers import MAX_ID
from retinascreen.web.inputs import PATIENT_ID_MAX, PATIENT_ID_PATTERN
from retinascreen.web.openapi_responses import error_response, json_response, page_parameters

_AUTH: list[dict[str, list[str]]] = [{"bearer": []}]
_401 = error_response("No valid token (unknown, revoked or expired)")
_503 = error_response("Database unavailable (answered with Retry-After)")
_VISIT_ID = {
    "name": "visit_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "the visit's public id (never a row number)",
}
_PHOTO_ID = {
    "name": "photo_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
}
_TEXT = {"type": "string", "maxLength": PATIENT_ID_MAX, "pattern": PATIENT_ID_PATTERN}
_PHOTO = {"type": "string", "contentMediaType": "application/octet-stream", "minLength": 1}
SLOTS = [f"{eye}_{field}" for eye in ("right", "left") for field in ("macula", "disc", "other")]
_FINDING = {
    "type": "object",
    "properties": {
        "gradable": {"type": "boolean"},
        "grade": {"type": ["integer", "null"]},
        "maculopathy": {"type": "boolean"},
        "photo_id": {"type": ["integer", "null"]},
        "missing_fields": {"type": "array", "items": {"type": "string"}},
        "retake": {"type": "boolean"},
    },
}
_DECISION_GRADED = {
    "type": "object",
    "required": ["gradable", "grade"],
    "properties": {
        "gradable": {"const": True},
        "grade": {"type": "integer", "minimum": 0, "maximum": 4},
        "maculopathy": {"type": "boolean"},
        "retake": {"type": "boolean", "description": "new photographs needed all the same"},
    },
}
_DECISION_UNGRADABLE = {
    "type": "object",
    "required": ["gradable"],
    "properties": {
        "gradable": {"const": False},
        "grade": {"type": "null"},
        "maculopathy": {"type": "boolean", "description": "ignored: an ungradable eye has none"},
        "retake": {"type": "boolean", "description": "always true for an ungradable eye"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Rule": {
        "type": "object",
        "required": ["id", "action", "summary", "text"],
        "properties": {
            "id": {"type": "string"},
            "action": {"enum": ["rescreen", "retake", "refer"]},
            "urgency": {"type": ["string", "null"]},
            "months": {"type": ["integer", "null"]},
            "summary": {"type": "string"},
            "text": {"type": "string"},
        },
    },
    "Outcome": {
        "type": "object",
        "required": ["action", "summary", "rule", "eye", "decided_by", "eyes"],
        "description": "per eye the worst grade among its gradable photos (a grader's where "
        "there is one), per patient the worse eye, then the policy table's rule",
        "properties": {
            "action": {"enum": ["rescreen", "retake", "refer"]},
            "summary": {"type": "string"},
            "text": {"type": "string"},
            "rule": {"$ref": "#/components/schemas/Rule"},
            "eye": {"type": "string", "description": "the eye that decided"},
            "photo_id": {"type": ["integer", "null"], "description": "the photo that decided"},
            "decided_by": {"type": "string"},
            "policy": {"type": "string"},
            "eyes": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "eye": {"type": "string"},
                        "machine": _FINDING,
                        "grader": {"type": ["object", "null"]},
                        "final": _FINDING,
                        "source": {"enum": ["machine", "grader"]},
                        "retake": {"type": "boolean"},
                        "rule": {"$ref": "#/components/schemas/Rule"},
                    },
                },
            },
        },
    },
    "Visit": {
        "type": "object",
        "required": ["id", "visit_date", "photos", "outcome", "reviews"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "patient_id": {"type": ["string", "null"]},
            "site": {"type": ["string", "null"]},
            "visit_date": {"type": "string", "format": "date"},
            "created": {"type": ["string", "null"], "format": "date-time"},
            "photos": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "eye", "grade", "gradable"],
                    "properties": {
                        "id": {"type": "integer"},
                        "eye": {"enum": ["left", "right", None]},
                        "field": {"enum": ["macula", "disc", "other", None]},
                        "grade": {"type": "integer", "minimum": 0, "maximum": 4},
                        "label": {"type": ["string", "null"]},
                        "gradable": {"type": "boolean"},
                        "referable": {"type": "boolean"},
                        "referable_probability": {"type": "number"},
                        "photo": {"type": "string"},
                        "heatmap": {"type": ["string", "null"]},
                    },
                },
            },
            "outcome": {"$ref": "#/components/schemas/Outcome"},
            "reviews": {"type": "array", "items": {"type": "object"}},
            "queue": {"type": ["object", "null"]},
        },
    },
    "VisitPage": {
        "type": "object",
        "required": ["visits", "page", "per_page", "total"],
        "properties": {
            "visits": {"type": "array", "items": {"$ref": "#/components/schemas/Visit"}},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
        },
    },
    "Review": {
        "type": "object",
        "required": ["eyes"],
        "properties": {
            "eyes": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": False,
                "properties": {
                    eye: {"oneOf": [_DECISION_GRADED, _DECISION_UNGRADABLE]}
                    for eye in ("right", "left", "unrecorded")
                },
            },
            "note": {"type": "string", "maxLength": 2000, "pattern": "^[^\\x00]*$"},
        },
    },
    "ReviewQueue": {
        "type": "object",
        "required": ["items"],
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "visit_id": {"type": "string"},
                        "queued": {"type": "string", "format": "date-time"},
                        "reasons": {"type": "array", "items": {"type": "object"}},
                        "site": {"type": ["string", "null"]},
                        "visit_date": {"type": "string", "format": "date"},
                    },
                },
            }
        },
    },
    "Agreement": {
        "type": "object",
        "required": ["overall", "sites", "months"],
        "description": "counts per outcome, ungradable rate, queue size and age, and machine "
        "vs grader on reviewed eyes (quadratic weighted kappa, referable sensitivity and "
        "specificity with Wilson 95 % intervals; the grader is the reference)",
        "properties": {
            "overall": {"type": "object"},
            "sites": {"type": "array", "items": {"type": "object"}},
            "months": {"type": "array", "items": {"type": "object"}},
        },
    },
}

_VISIT_NOT_FOUND = error_response("No such visit you may see")

PATHS: dict[str, Any] = {
    "/api/v1/visits": {
        "get": {
            "summary": "The visits you may see, newest first (clinic: your site's; grader: "
            "the queue's; administrator: all)",
            "operationId": "listVisits",
            "security": _AUTH,
            "parameters": page_parameters(),
            "responses": {
                "200": json_response("VisitPage", "One page of visits"),
                "400": error_response("page or per_page out of range"),
                "401": _401,
                "503": _503,
            },
        },
        "post": {
            "summary": "Grade a visit's photos (several, both eyes) and store the visit",
            "description": "Photo fields are named <eye>_<field> and may repeat; a bad photo "
            "refuses the whole visit (the message names it) and nothing is stored.",
            "operationId": "createVisit",
            "security": _AUTH,
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["patient_id"],
                            "properties": {
                                "patient_id": {
                                    "allOf": [_TEXT, {"pattern": "\\S"}],
                                    "description": "pseudonymous id, never a name",
                                },
                                "visit_date": {"type": "string", "format": "date"},
                                "site": _TEXT,
                                **{slot: _PHOTO for slot in SLOTS},
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_response("Visit", "The visit with its photos' grades and its outcome"),
                "400": error_response(
                    "No patient id, a bad patient id, site or date, an unknown field"
                ),
                "401": _401,
                "403": error_response("Graders review visits; they do not upload them"),
                "408": error_response("The request body arrived too slowly"),
                "413": error_response("File, form field or pixel count over the limit"),
                "415": error_response("Unsupported image format"),
                "422": error_response(
                    "No photo, too many, a date in the future or before 1900, or a photo that "
                    "is not an image, is empty, truncated or not a fundus photograph"
                ),
                "499": error_response("The client closed the connection: nothing was stored"),
                "503": _503,
                "507": error_response(
                    "The server's storage is full: nothing was stored (Retry-After)"
                ),
            },
        },
    },
    "/api/v1/visits/{visit_id}": {
        "get": {
            "summary": "One visit: photos, outcome, reviews, queue state",
            "operationId": "getVisit",
            "security": _AUTH,
            "parameters": [_VISIT_ID],
            "responses": {
                "200": json_response("Visit", "The visit"),
                "401": _401,
                "404": _VISIT_NOT_FOUND,
                "503": _503,
            },
        }
    },
    "/api/v1/visits/{visit_id}/outcome": {
        "get": {
            "summary": "A visit's outcome: the rule, the eye and the photo that decided",
            "operationId": "getVisitOutcome",
            "security": _AUTH,
            "parameters": [_VISIT_ID],
            "responses": {
                "200": json_response("Outcome", "The outcome"),
                "401": _401,
                "404": _VISIT_NOT_FOUND,
                "503": _503,
            },
        }
    },
    "/api/v1/visits/{visit_id}/fhir": {
        "get": {
            "summary": "A visit as FHIR R4: a Bundle with a DiagnosticReport and per-eye "
            "Observations (grade, maculopathy, gradable; the grader's where one decided) and "
            "the policy's recommendation",
            "operationId": "getVisitFhir",
            "security": _AUTH,
            "parameters": [_VISIT_ID],
            "responses": {
                "200": {
                    "description": "FHIR R4 Bundle (type collection), SNOMED CT and LOINC coded",
                    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
                },
                "401": _401,
                "404": _VISIT_NOT_FOUND,
                "422": error_response("A visit whose results FHIR cannot express"),
                "503": _503,
            },
        }
    },
    "/api/v1/visits/{visit_id}/photos/{photo_id}/photo": {
        "get": {
            "summary": "A photo of a visit as uploaded (other formats as PNG)",
            "operationId": "getVisitPhoto",
            "security": _AUTH,
            "parameters": [_VISIT_ID, _PHOTO_ID],
            "responses": {
                "200": {
                    "description": "The photograph",
                    "content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}},
                },
                "401": _401,
                "404": error_response("No such photo of a visit you may see"),
            },
        }
    },
    "/api/v1/visits/{visit_id}/photos/{photo_id}/heatmap.png": {
        "get": {
            "summary": "The heat map (Grad-CAM) of a photo of a visit",
            "operationId": "getVisitHeatmap",
            "security": _AUTH,
            "parameters": [_VISIT_ID, _PHOTO_ID],
            "responses": {
                "200": {"description": "PNG image", "content": {"image/png": {}}},
                "401": _401,
                "404": error_response("No such photo, or it has no heat map (ungradable)"),
            },
        }
    },
    "/api/v1/visits/{visit_id}/reviews": {
        "post": {
            "summary": "A grader's decision per eye (grade, quality, maculopathy) with a note",
            "description": "The machine's result is kept beside it; the outcome uses the "
            "grader's; the visit leaves the queue; the audit log records who changed what.",
            "operationId": "createReview",
            "security": _AUTH,
            "parameters": [_VISIT_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Review"}}
                },
            },
            "responses": {
                "201": json_response("Visit", "The visit with the new outcome"),
                "400": error_response("Not JSON, or not the documented object"),
                "401": _401,
                "403": error_response("Only graders and administrators review"),
                "404": _VISIT_NOT_FOUND,
                "422": error_response("The visit has no photo of that eye"),
                "503": _503,
            },
        }
    },
    "/api/v1/review-queue": {
        "get": {
            "summary": "Visits waiting for a grader, oldest first, with the rules that sent them",
            "operationId": "getReviewQueue",
            "security": _AUTH,
            "responses": {
                "200": json_response("ReviewQueue", "The open queue"),
                "401": _401,
                "403": error_response("Only graders and administrators see the queue"),
                "503": _503,
            },
        }
    },
    "/api/v1/agreement": {
        "get": {
            "summary": "Agreement and workload, overall, per site and per month",
            "operationId": "getAgreement",
            "security": _AUTH,
            "responses": {
                "200": json_response("Agreement", "The figures"),
                "401": _401,
                "403": error_response("Only graders and administrators see the figures"),
                "503": _503,
            },
        }
    },
}
