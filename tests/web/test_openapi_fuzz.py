"""Schemathesis against a live server's ``/api/v1/openapi.json``: the document tells the truth.

Every generated request (a bounded number per operation) must get a documented status, a
documented content type and a body that matches its schema, and never a server error.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.helpers.live_server import live_server

EXAMPLES = int(os.environ.get("RETINASCREEN_FUZZ_EXAMPLES", "15"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, web_model_path):
    with live_server(tmp_path_factory.mktemp("fuzz"), web_model_path, workers=1) as live:
        yield live


def test_the_api_answers_as_its_openapi_document_says(server):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    token = server.token()
    assert server.api_upload(token, _photo()).status == 201  # something to list and fetch
    schema = schemathesis.openapi.from_url(f"{server.base}/api/v1/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    failures: list[str] = []

    def fuzz(operation: Any, auth: dict[str, str]) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            try:
                case.call_and_validate(
                    base_url=server.base, headers=auth, checks=checks, timeout=30
                )
            except Exception as exc:  # schemathesis's failure report; keep fuzzing
                failures.append(f"{operation.label}: {str(exc)[:800]}")

        run()

    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        auth = {"Authorization": f"Bearer {token}"}
        if operation.label.startswith("DELETE /api/v1/tokens"):
            auth = {"Authorization": f"Bearer {server.token()}"}  # revoke a throw-away token
        fuzz(operation, auth)
    assert operations >= 6
    assert failures == []


def _photo() -> bytes:
    from tests.helpers.web import fundus_png

    return fundus_png(3)
