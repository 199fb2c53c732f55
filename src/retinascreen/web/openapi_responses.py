"""The OpenAPI objects both route documents use (``openapi.py``, ``visit_openapi.py``)."""

from __future__ import annotations

from typing import Any

from retinascreen.web.handlers import MAX_ID, MAX_PER_PAGE, PER_PAGE_DEFAULT


def page_parameters() -> list[dict[str, Any]]:
    """The ``page`` and ``per_page`` query parameters of a paged list."""
    return [
        {
            "name": "page",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        },
        {
            "name": "per_page",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
            "description": f"default {PER_PAGE_DEFAULT}",
        },
    ]


def error_response(description: str) -> dict[str, Any]:
    """A response whose body is the API's ``Error`` schema."""
    return json_response("Error", description)


def json_response(schema: str, description: str) -> dict[str, Any]:
    """A JSON response whose body is the component schema ``schema``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
