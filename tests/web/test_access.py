"""One ownership rule for screenings, in the pages and the API alike: another user's screening,
even an administrator's look at it, answers like a missing one (404), on every screening route."""

from __future__ import annotations

from sqlalchemy import select

from retinascreen.web.db import session
from retinascreen.web.models import User
from tests.helpers.web import api_token, api_upload, bearer, fundus_png, register


def client_with_token(app, name):
    client = app.test_client()
    register(client, name)  # signed in for the pages, and a token for the API
    return client, api_token(client, name)


def make_admin(app, name):
    with app.app_context():
        db = session()
        db.scalar(select(User).where(User.username == name)).is_admin = True
        db.commit()


def test_every_screening_route_hides_another_users_screening_even_from_an_admin(web_app):
    alice, alice_token = client_with_token(web_app, "alice")
    sid = api_upload(alice, alice_token, fundus_png(0), patient_id="ALICE-1").get_json()["id"]
    bob, bob_token = client_with_token(web_app, "bob")
    alice_auth, bob_auth = bearer(alice_token), bearer(bob_token)
    make_admin(web_app, "bob")
    routes = sorted(
        rule.rule.replace("<int:screening_id>", str(sid))
        for rule in web_app.url_map.iter_rules()
        if "<int:screening_id>" in rule.rule and "GET" in (rule.methods or ())
    )
    assert len(routes) >= 10  # pages and API: result, photo, images, report, FHIR
    for path in routes:
        assert bob.get(path, headers=bob_auth).status_code == 404, path
        assert bob.get(path.replace(str(sid), "999999"), headers=bob_auth).status_code == 404
    for path in (
        f"/screenings/{sid}",
        f"/api/v1/screenings/{sid}",
        f"/api/v1/screenings/{sid}/fhir",
    ):
        assert alice.get(path, headers=alice_auth).status_code == 200, path

    assert "ALICE-1" not in bob.get("/screenings?q=ALICE").get_data(as_text=True)
    listed = bob.get("/api/v1/screenings?patient_id=ALICE", headers=bob_auth).get_json()
    assert listed["total"] == 0 and listed["screenings"] == []
    mine = alice.get("/api/v1/screenings?patient_id=alice", headers=alice_auth).get_json()
    assert [row["id"] for row in mine["screenings"]] == [sid]
