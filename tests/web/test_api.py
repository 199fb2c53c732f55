"""The REST API: tokens, screenings, JSON errors, ownership and the OpenAPI document."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from retinascreen.grading import LABELS
from retinascreen.web.models import ApiToken, Screening
from tests.helpers.web import (
    api_token,
    api_upload,
    bad_inputs,
    bearer,
    fundus_png,
    make_app,
    register,
    stored_files,
)

RESULT_KEYS = {
    "grade",
    "label",
    "probabilities",
    "referable",
    "referable_probability",
    "gradable",
    "quality",
    "model",
}


def user(app, name="alice"):
    client = app.test_client()
    register(client, name)
    return client, api_token(client, name)


def rows(app, model=Screening):
    from retinascreen.web.db import session

    with app.app_context():
        return session().scalars(select(model)).all()


def test_token_then_screening_then_read_back(web_app):
    client, token = user(web_app)
    response = api_upload(client, token, fundus_png(4), patient_id="API-7", eye="right")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body.keys() >= RESULT_KEYS
    assert body["label"] == LABELS[body["grade"]] and len(body["probabilities"]) == 5
    assert body["referable"] == (body["grade"] >= 2)
    assert abs(sum(body["probabilities"]) - 1) < 1e-3
    assert body["patient_id"] == "API-7" and body["eye"] == "right" and body["synthetic"] is True
    assert response.headers["Location"] == f"/api/v1/screenings/{body['id']}"

    again = client.get(f"/api/v1/screenings/{body['id']}", headers=bearer(token))
    assert again.status_code == 200 and again.get_json()["probabilities"] == body["probabilities"]
    listing = client.get("/api/v1/screenings", headers=bearer(token)).get_json()
    assert listing["total"] == 1 and listing["screenings"][0]["id"] == body["id"]
    assert (
        client.get("/api/v1/screenings?patient_id=api", headers=bearer(token)).get_json()["total"]
        == 1
    )
    assert (
        client.get("/api/v1/screenings?patient_id=zzz", headers=bearer(token)).get_json()["total"]
        == 0
    )
    # the web page shows the same screening
    assert client.get(f"/screenings/{body['id']}").status_code == 200


def test_tokens_are_random_and_stored_hashed(web_app):
    client, first = user(web_app)
    second = api_token(client, "alice")
    assert first != second and len(first) > 40
    digests = {t.token_sha256 for t in rows(web_app, ApiToken)}
    assert digests == {hashlib.sha256(t.encode()).hexdigest() for t in (first, second)}


@pytest.mark.parametrize(
    "body,status",
    [
        ({"username": "alice", "password": "wrong password!"}, 401),
        ({"username": "nobody", "password": "whatever-whatever"}, 401),
        ({"username": "alice"}, 400),
        (None, 400),
    ],
)
def test_bad_credentials_get_json_errors(web_app, body, status):
    user(web_app)
    client = web_app.test_client()
    response = client.post("/api/v1/tokens", json=body) if body else client.post("/api/v1/tokens")
    assert response.status_code == status and response.get_json()["error"]


def test_token_requests_are_rate_limited(web_app):
    user(web_app)
    client = web_app.test_client()
    for _ in range(5):
        assert (
            client.post(
                "/api/v1/tokens", json={"username": "alice", "password": "nope-nope"}
            ).status_code
            == 401
        )
    response = client.post(
        "/api/v1/tokens", json={"username": "alice", "password": "correct horse battery"}
    )
    assert response.status_code == 429 and "Too many" in response.get_json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic YWxpY2U6eA=="}],
)
def test_requests_without_a_valid_token_get_401(web_app, headers):
    client = web_app.test_client()
    for method, path in [
        ("get", "/api/v1/screenings"),
        ("get", "/api/v1/screenings/1"),
        ("post", "/api/v1/screenings"),
        ("delete", "/api/v1/tokens/current"),
    ]:
        response = getattr(client, method)(path, headers=headers)
        assert response.status_code == 401, path
        assert response.get_json()["error"] and "Bearer" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("case", sorted(bad_inputs()))
def test_bad_images_get_4xx_json_and_store_nothing(web_app, case):
    data, name, status = bad_inputs()[case]
    client, token = user(web_app)
    response = api_upload(client, token, data, name)
    assert response.status_code == status
    assert len(response.get_json()["error"]) > 20
    assert rows(web_app) == [] and stored_files(web_app) == []
    assert api_upload(client, token, fundus_png(0)).status_code == 201  # still serving


def test_missing_field_bad_eye_and_oversize_body(web_app, tmp_path, web_predictor):
    client, token = user(web_app)
    response = client.post(
        "/api/v1/screenings", headers=bearer(token), data={}, content_type="multipart/form-data"
    )
    assert response.status_code == 400 and "image" in response.get_json()["error"]
    assert api_upload(client, token, fundus_png(0), eye="both").status_code == 400
    assert api_upload(client, token, fundus_png(0), patient_id="\x00evil").status_code == 400

    small = make_app(tmp_path / "small", web_predictor, MAX_CONTENT_LENGTH=20_000)
    client, token = user(small)
    response = api_upload(client, token, fundus_png(0) + b"\0" * 30_000)
    assert response.status_code == 413 and "too large" in response.get_json()["error"]
    assert rows(small) == [] and stored_files(small) == []


def test_another_users_screening_is_404(web_app):
    alice, alice_token = user(web_app, "alice")
    sid = api_upload(alice, alice_token, fundus_png(0)).get_json()["id"]
    bob, bob_token = user(web_app, "bob")
    response = bob.get(f"/api/v1/screenings/{sid}", headers=bearer(bob_token))
    assert response.status_code == 404 and response.get_json() == {"error": "No such screening."}
    assert bob.get("/api/v1/screenings", headers=bearer(bob_token)).get_json()["total"] == 0
    assert bob.get("/api/v1/nowhere").get_json()["error"]  # unknown API paths answer JSON


def test_revoking_tokens(web_app):
    client, token = user(web_app)
    other = api_token(client, "alice")
    other_id = next(
        t.id
        for t in rows(web_app, ApiToken)
        if t.token_sha256 == hashlib.sha256(other.encode()).hexdigest()
    )
    assert client.delete(f"/api/v1/tokens/{other_id}", headers=bearer(token)).status_code == 204
    assert client.get("/api/v1/screenings", headers=bearer(other)).status_code == 401
    assert client.delete("/api/v1/tokens/current", headers=bearer(token)).status_code == 204
    assert client.get("/api/v1/screenings", headers=bearer(token)).status_code == 401
    # nobody can revoke somebody else's token
    bob, bob_token = user(web_app, "bob")
    carol, carol_token = user(web_app, "carol")
    carol_id = max(t.id for t in rows(web_app, ApiToken))
    assert bob.delete(f"/api/v1/tokens/{carol_id}", headers=bearer(bob_token)).status_code == 404
    assert carol.get("/api/v1/screenings", headers=bearer(carol_token)).status_code == 200


def test_openapi_documents_exactly_the_api_routes(web_app):
    document = web_app.test_client().get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    documented = {
        (path, method.upper()) for path, ops in document["paths"].items() for method in ops
    }
    routed = set()
    for rule in web_app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1") or rule.rule in ("/healthz", "/readyz"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == routed
    # every $ref resolves
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', str(document).replace("'", '"')))
    assert refs <= document["components"]["schemas"].keys()


def test_a_screening_as_fhir_is_a_valid_bundle_owned_like_the_screening(web_app):
    from fhir.resources.R4B.bundle import Bundle

    client, token = user(web_app)
    body = api_upload(client, token, fundus_png(4), patient_id="F-1", eye="left").get_json()
    response = client.get(f"/api/v1/screenings/{body['id']}/fhir", headers=bearer(token))
    assert response.status_code == 200 and response.mimetype == "application/fhir+json"
    bundle = Bundle.model_validate(response.get_json())
    report, *observations = (entry.resource for entry in bundle.entry)
    assert report.subject.identifier.value == "F-1"
    grade = next(o for o in observations if o.id == "left-grade")
    assert grade.bodySite.coding[0].code == "8966001"
    if body["gradable"]:
        assert grade.component[0].valueInteger == body["grade"]
    assert ("refer to an ophthalmologist" in report.conclusion) == (
        body["gradable"] and body["referable"]
    )
    bob, bob_token = user(web_app, "bob")
    other = bob.get(f"/api/v1/screenings/{body['id']}/fhir", headers=bearer(bob_token))
    assert other.status_code == 404
    assert client.get(f"/api/v1/screenings/{body['id']}/fhir").status_code == 401
