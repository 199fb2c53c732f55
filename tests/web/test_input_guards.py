"""Text that no database can store is refused at the boundary (400, never 500), list
parameters are checked as the OpenAPI document says, and /readyz keeps database internals
out of its public answer (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging

import pytest

from tests.helpers.web import (
    PASSWORD,
    api_token,
    api_upload,
    bearer,
    fundus_png,
    make_app,
    post_form,
    register,
)

NUL = "al\x00ice"


def test_nul_bytes_in_sign_in_and_registration_forms_are_400(db_app):
    client = db_app.test_client()
    for page, form in (
        ("/auth/login", {"username": NUL, "password": PASSWORD}),
        ("/auth/register", {"username": NUL, "password": PASSWORD, "confirm": PASSWORD}),
        ("/auth/register", {"username": "alice", "password": "a\x00" * 8, "confirm": "x"}),
    ):
        reply = post_form(client, page, form)
        assert reply.status_code == 400, (page, reply.status_code)
        assert "NUL byte" in reply.get_data(as_text=True)
    as_multipart = post_form(
        client,
        "/auth/login",
        {"username": NUL, "password": PASSWORD},
        content_type="multipart/form-data",
    )
    assert as_multipart.status_code == 400 and "NUL byte" in as_multipart.get_data(as_text=True)


def test_fields_a_token_request_does_not_read_may_hold_anything(db_app):
    body = '{"username": "nobody", "password": "pw", "note\\u0000": "\\ud800"}'
    reply = db_app.test_client().post("/api/v1/tokens", data=body, content_type="application/json")
    assert reply.status_code == 401  # ignored, as the document allows


@pytest.mark.parametrize(
    "body",
    [
        '{"username": "al\\u0000ice", "password": "pw"}',
        '{"username": "\\ud800", "password": "pw"}',
        '{"username": "alice", "password": "\\udfff"}',
    ],
)
def test_nul_and_lone_surrogates_in_token_requests_are_400_json(db_app, body):
    reply = db_app.test_client().post("/api/v1/tokens", data=body, content_type="application/json")
    assert reply.status_code == 400
    assert "NUL byte" in reply.get_json()["error"] or "surrogate" in reply.get_json()["error"]


def test_nul_in_searches_is_400(db_app):
    client = db_app.test_client()
    register(client, "alice")
    token = api_token(db_app.test_client(), "alice")
    assert client.get("/screenings?q=ab%00cd").status_code == 400
    reply = client.get("/api/v1/screenings?patient_id=%00", headers=bearer(token))
    assert reply.status_code == 400 and "NUL byte" in reply.get_json()["error"]


def test_list_parameters_are_checked_as_documented(web_app):
    client = web_app.test_client()
    register(client, "alice")
    token = api_token(web_app.test_client(), "alice")
    assert api_upload(client, token, fundus_png(1), patient_id="P-1").status_code == 201
    for query in (
        "per_page=null",
        "page=",
        "per_page=0",
        "per_page=101",
        "per_page=1.5",
        "page=2147483648",
        "patient_id=" + "x" * 65,
        "patient_id=%E2%80%AE1-P",  # right-to-left override
    ):
        reply = client.get(f"/api/v1/screenings?{query}", headers=bearer(token))
        assert reply.status_code == 400, query
        assert reply.get_json()["error"]
    found = client.get("/api/v1/screenings?per_page=100&patient_id=p-1", headers=bearer(token))
    assert found.status_code == 200 and found.get_json()["total"] == 1


def test_an_upload_with_an_invisible_character_in_the_patient_id_is_refused(web_app):
    client = web_app.test_client()
    register(client, "alice")
    token = api_token(web_app.test_client(), "alice")
    reply = api_upload(client, token, fundus_png(1), patient_id="P-\u200b1")
    assert reply.status_code == 400 and "Patient id" in reply.get_json()["error"]


def test_the_document_states_the_limits_the_server_applies(web_app):
    document = web_app.test_client().get("/api/v1/openapi.json").get_json()
    listing = document["paths"]["/api/v1/screenings"]["get"]["parameters"]
    schemas = {p["name"]: p["schema"] for p in listing}
    assert schemas["page"]["maximum"] == 2**31 - 1
    assert schemas["per_page"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert schemas["patient_id"]["maxLength"] == 64 and schemas["patient_id"]["pattern"]
    upload = document["paths"]["/api/v1/screenings"]["post"]["requestBody"]["content"]
    fields = upload["multipart/form-data"]["schema"]["properties"]
    assert fields["image"]["minLength"] == 1 and fields["patient_id"] == schemas["patient_id"]
    credentials = document["components"]["schemas"]["Credentials"]["properties"]
    assert credentials["username"]["minLength"] == 1


def test_readyz_keeps_the_database_error_out_of_its_answer(tmp_path, web_predictor, caplog):
    from retinascreen.web import dispose
    from tests.helpers.live_server import free_port

    port = free_port()
    url = f"postgresql+psycopg://nobody:nothing@127.0.0.1:{port}/retinascreen"
    app = make_app(tmp_path / "instance", web_predictor, url, AUTO_MIGRATE=False)
    try:
        with caplog.at_level(logging.WARNING, logger="retinascreen.web.health"):
            reply = app.test_client().get("/readyz")
        assert reply.status_code == 503
        body = reply.get_data(as_text=True)
        assert str(port) not in body and "127.0.0.1" not in body and "nobody" not in body
        assert reply.get_json()["checks"]["database"] == {
            "ok": False,
            "detail": "database unreachable",
        }
        assert str(port) in caplog.text  # the operator finds the details in the log
    finally:
        dispose(app)
