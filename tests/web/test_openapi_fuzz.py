"""Schemathesis against a live server's ``/api/v1/openapi.json``: the document tells the truth,
on SQLite and on PostgreSQL.

Every generated request (a bounded number per operation, valid and invalid ones) must get a
documented status, a documented content type and a body that matches its schema, never a
server error; a request the document allows must not be refused as malformed (400), and one
it forbids must be refused (4xx).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.live_server import LiveServer, live_server

EXAMPLES = int(os.environ.get("RETINASCREEN_FUZZ_EXAMPLES", "25"))
"""Examples per operation and mode (issue 27's attack run used 200)."""

ACCEPTED = ["2xx", "401", "404", "429"]
"""What a request the document allows may get (no 400: the server agrees it is well formed)."""
UPLOAD_ACCEPTED = [*ACCEPTED, "413", "415", "422"]
"""An upload's bytes are the one thing a schema cannot make a fundus photograph of."""
# Operations that revoke the token they are sent with run last, each with its own token.
LAST = ("POST /api/v1/tokens/refresh", "DELETE /api/v1/tokens", "POST /api/v1/tokens")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, web_model_path) -> Iterator[LiveServer]:
    from tests.helpers.web import postgres_schema_url

    urls = iter([None]) if request.param == "sqlite" else postgres_schema_url()
    url = next(urls)
    try:
        folder = tmp_path_factory.mktemp(f"fuzz-{request.param}")
        with live_server(folder, web_model_path, database_url=url, workers=1) as live:
            yield live
    finally:
        for _ in urls:  # drops the PostgreSQL schema
            pass


def test_the_api_answers_as_its_openapi_document_says(server):
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.config import SchemathesisConfig
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        positive_data_acceptance,
        response_schema_conformance,
        status_code_conformance,
    )

    token = server.token()
    spare = {label: server.token() for label in LAST}  # before sign-ins are fuzzed
    assert server.api_upload(token, _photo()).status == 201  # something to list and fetch
    config = SchemathesisConfig.from_dict(
        {
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
            "operations": [
                {
                    "include-operation-id": operation,
                    "checks": {"positive_data_acceptance": {"expected-statuses": UPLOAD_ACCEPTED}},
                }
                for operation in ("createScreening", "createVisit")
            ]
            + [
                {  # a review may name an eye the visit has no photo of
                    "include-operation-id": "createReview",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}
                    },
                }
            ],
        }
    )
    schema = schemathesis.openapi.from_url(f"{server.base}/api/v1/openapi.json", config=config)
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        positive_data_acceptance,
        negative_data_rejection,
    ]
    failures: list[str] = []

    def fuzz(operation: Any, auth: dict[str, str], mode: Any) -> None:
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        # The token is fixed, not generated: a negative case may not "drop" it.
        @given(case=operation.as_strategy(generation_mode=mode, headers=auth))
        def run(case: Any) -> None:
            try:
                case.call_and_validate(base_url=server.base, checks=checks, timeout=30)
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis's report; go on
                failures.append(f"{operation.label} ({mode.value}): {str(exc)[:800]}")

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
            assert mode == GenerationMode.NEGATIVE, operation.label

    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda op: op.label.startswith(LAST))
    for operation in operations:
        own = next((spare[label] for label in LAST if operation.label.startswith(label)), token)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(operation, {"Authorization": f"Bearer {own}"}, mode)
    assert len(operations) >= 6
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in server.output()


def _photo() -> bytes:
    from tests.helpers.web import fundus_png

    return fundus_png(3)
