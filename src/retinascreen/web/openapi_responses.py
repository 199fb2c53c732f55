"""The OpenAPI response objects every route's document uses (``openapi.py``, ``visit_openapi.py``)."""

from __future__ import annotations

from typing import Any


def error_response(description: str) -> dict[str, Any]:
    """A response whose body is the API's ``Error`` schema."""
    return json_response("Error", description)


def json_response(schema: str, description: str) -> dict[str, Any]:
    """A JSON response whose body is the component schema ``schema``."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }
