"""Accounts through the test client: registration modes and invites, password changes, session
lifetime, token expiry/refresh/limits, proxies, OpenAPI servers, and the atomic counters on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from retinascreen.cli import main
from retinascreen.web.models import ApiToken, AuditEvent, User
from tests.helpers.web import (
    PASSWORD,
    api_token,
    bearer,
    login,
    make_app,
    post_form,
    register,
)


def rows(app, model):
    from retinascreen.web.db import session

    with app.app_context():
        return session().scalars(select(model)).all()


def backdate(app, model, column, delta):
    """Set a timestamp column of every row to now - ``delta`` (time travel)."""
    from retinascreen.web.db import session
    from retinascreen.web.models import utcnow

    with app.app_context():
        db = session()
        db.execute(update(model).values({column: utcnow() - delta}))
        db.commit()


@pytest.fixture
def closed_app(tmp_path, web_predictor):
    from retinascreen.web import dispose

    app = make_app(tmp_path / "closed", web_predictor, REGISTRATION="admin")
    yield app
    dispose(app)


def test_registration_is_closed_by_default(tmp_path, web_predictor, monkeypatch):
    from retinascreen.web import create_app, dispose

    monkeypatch.delenv("RETINASCREEN_REGISTRATION", raising=False)
    app = create_app(
        {"INSTANCE_PATH": tmp_path / "default", "SECRET_KEY": "x"}, predictor=web_predictor
    )
    try:
        client = app.test_client()
        page = client.get("/auth/register")
        assert page.status_code == 403 and "Registration is closed" in page.get_data(as_text=True)
        assert 'href="/auth/register"' not in client.get("/auth/login").get_data(as_text=True)
        form = {"username": "eve", "password": PASSWORD, "confirm": PASSWORD}
        post = post_form(client, "/auth/login", form, to="/auth/register")
        assert post.status_code == 403 and rows(app, User) == []
    finally:
        dispose(app)


def test_invite_registration_works_once_with_a_valid_code(tmp_path, web_predictor, capsys):
    from retinascreen.web import dispose

    instance = tmp_path / "invite"
    app = make_app(instance, web_predictor, REGISTRATION="invite")
    try:
        assert (
            main(["admin", "invite", "--instance", str(instance), "--url", "https://rs.example"])
            == 0
        )
        link = capsys.readouterr().out.strip().splitlines()[-1]
        assert link.startswith("https://rs.example/auth/register?invite=")
        code = link.rsplit("=", 1)[1]
        client = app.test_client()
        assert f'value="{code}"' in client.get(f"/auth/register?invite={code}").get_data(
            as_text=True
        )
        form = {"username": "dana", "password": PASSWORD, "confirm": PASSWORD}
        no_code = post_form(client, "/auth/register", form)
        assert no_code.status_code == 400 and "invite is not valid" in no_code.get_data(
            as_text=True
        )
        assert post_form(client, "/auth/register", {**form, "invite": code}).status_code == 302
        again = post_form(client, "/auth/register", {**form, "username": "eve", "invite": code})
        assert again.status_code == 400 and "invite is not valid" in again.get_data(as_text=True)
        assert [u.username for u in rows(app, User)] == ["dana"]
        assert login(client, "dana").status_code == 302
    finally:
        dispose(app)


def test_registrations_per_address_are_limited(tmp_path, web_predictor):
    from retinascreen.web import dispose

    app = make_app(tmp_path / "reg", web_predictor, REGISTRATION_IP_LIMIT=2)
    try:
        client = app.test_client()
        statuses = [register(client, f"user{i}", sign_in=False).status_code for i in range(3)]
        assert statuses == [302, 302, 429]
    finally:
        dispose(app)


def test_admin_create_refuses_a_guessable_password(tmp_path, monkeypatch, capsys):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.StringIO("password123\n"))
    argv = ["admin", "create", "chief", "--password-stdin", "--instance", str(tmp_path)]
    assert main(argv) == 2
    assert "too weak" in capsys.readouterr().err


def test_password_change_needs_the_current_password_and_a_strong_new_one(web_app):
    client = web_app.test_client()
    register(client, "alice")
    other = web_app.test_client()
    login(other, "alice")
    new = "quiet harbour pencil 42"
    wrong = post_form(
        client, "/auth/password", {"current": "nope", "password": new, "confirm": new}
    )
    assert wrong.status_code == 400 and "not your current password" in wrong.get_data(as_text=True)
    weak = post_form(
        client,
        "/auth/password",
        {"current": PASSWORD, "password": "alicealice1", "confirm": "alicealice1"},
    )
    assert weak.status_code == 400 and "guess" in weak.get_data(as_text=True)
    assert other.get("/screenings").status_code == 200  # nothing changed yet
    done = post_form(
        client, "/auth/password", {"current": PASSWORD, "password": new, "confirm": new}
    )
    assert done.status_code == 302
    assert client.get("/screenings").status_code == 200
    assert other.get("/screenings").status_code == 302
    assert login(web_app.test_client(), "alice", new).status_code == 302
    assert ("password_changed", "alice") in [
        (e.event, e.username) for e in rows(web_app, AuditEvent)
    ]


def test_sessions_end_after_their_absolute_lifetime(web_app):
    client = web_app.test_client()
    register(client, "alice")
    assert client.get("/screenings").status_code == 200
    with client.session_transaction() as cookie:
        cookie["login_at"] -= 8 * 3600 + 1  # signed in 8 hours ago, still active
    response = client.get("/screenings")
    assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")


def test_tokens_expire_with_a_clear_message(web_app):
    register(web_app.test_client(), "alice")
    client = web_app.test_client()
    secret = api_token(client, "alice")
    assert client.get("/api/v1/screenings", headers=bearer(secret)).status_code == 200
    backdate(web_app, ApiToken, "created", timedelta(hours=24, seconds=1))
    response = client.get("/api/v1/screenings", headers=bearer(secret))
    assert response.status_code == 401 and "expired" in response.get_json()["error"]


def test_refresh_gives_a_new_token_and_revokes_the_old_one(web_app):
    register(web_app.test_client(), "alice")
    client = web_app.test_client()
    old = api_token(client, "alice")
    response = client.post("/api/v1/tokens/refresh", headers=bearer(old))
    assert response.status_code == 201 and response.get_json()["expires"]
    new = response.get_json()["token"]
    assert client.get("/api/v1/screenings", headers=bearer(new)).status_code == 200
    assert client.get("/api/v1/screenings", headers=bearer(old)).status_code == 401
    assert client.post("/api/v1/tokens/refresh", headers=bearer(old)).status_code == 401


def test_token_creation_is_limited_per_user(tmp_path, web_predictor):
    from retinascreen.web import dispose

    app = make_app(tmp_path / "tok", web_predictor, TOKEN_CREATE_LIMIT=3)
    try:
        register(app.test_client(), "alice")
        client = app.test_client()
        body = {"username": "alice", "password": PASSWORD}
        statuses = [client.post("/api/v1/tokens", json=body).status_code for _ in range(4)]
        assert statuses == [201, 201, 201, 429]
        refused = client.post("/api/v1/tokens", json=body)
        assert (
            int(refused.headers["Retry-After"]) > 60 and "Too many" in refused.get_json()["error"]
        )
    finally:
        dispose(app)


def test_api_reads_do_not_write_last_used(web_app):
    register(web_app.test_client(), "alice")
    client = web_app.test_client()
    secret = api_token(client, "alice")
    for _ in range(3):
        assert client.get("/api/v1/screenings", headers=bearer(secret)).status_code == 200
    assert [t.last_used for t in rows(web_app, ApiToken)] == [None]
    assert client.delete("/api/v1/tokens/current", headers=bearer(secret)).status_code == 204
    assert rows(web_app, ApiToken)[0].last_used is not None


def test_forwarded_addresses_count_only_behind_trusted_proxies(tmp_path, web_predictor):
    from retinascreen.web import dispose

    for proxies, expected in ((0, {"10.0.0.9"}), (1, {"198.51.100.1", "198.51.100.2"})):
        app = make_app(tmp_path / f"p{proxies}", web_predictor, TRUSTED_PROXIES=proxies)
        try:
            client = app.test_client()
            for host in ("198.51.100.1", "198.51.100.2"):
                client.post(
                    "/api/v1/tokens",
                    json={"username": "x", "password": "y"},
                    headers={"X-Forwarded-For": host},
                    environ_base={"REMOTE_ADDR": "10.0.0.9"},
                )
            assert {e.ip for e in rows(app, AuditEvent)} == expected
        finally:
            dispose(app)


def test_openapi_servers_never_echo_the_host_header(tmp_path, web_app, web_predictor):
    from retinascreen.web import dispose

    document = web_app.test_client().get("/api/v1/openapi.json", headers={"Host": "evil.example"})
    assert document.get_json()["servers"] == [{"url": "/"}]
    assert "/api/v1/tokens/refresh" in document.get_json()["paths"]
    app = make_app(tmp_path / "pub", web_predictor, PUBLIC_URL="https://rs.example/")
    try:
        document = app.test_client().get("/api/v1/openapi.json", headers={"Host": "evil.example"})
        assert document.get_json()["servers"] == [{"url": "https://rs.example"}]
    finally:
        dispose(app)


def test_only_patient_pages_and_the_api_are_no_store(web_app):
    client = web_app.test_client()
    register(client, "alice")
    assert client.get("/screenings").headers["Cache-Control"] == "no-store"
    assert client.get("/api/v1/openapi.json").headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/").headers.get("Cache-Control", "")


def test_counters_are_atomic_under_parallel_takes(db_app):
    """20 threads take from a limit of 5 at once: exactly 5 pass, on SQLite and PostgreSQL."""
    from retinascreen.web.limits import Limit, Ticket, take

    results: list[object] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        with db_app.app_context():
            barrier.wait()
            results.append(take([Limit("test:ip:1", 5, 300), Limit("test:global", 100, 300)]))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tickets = [r for r in results if isinstance(r, Ticket)]
    assert len(tickets) == 5
    with db_app.app_context():  # refused takes were not counted on the other limit either
        from sqlalchemy import text

        from retinascreen.web.db import session

        count = (
            session()
            .execute(text("SELECT count FROM rate_counters WHERE key = 'test:global'"))
            .scalar()
        )
        assert count == 5
        tickets[0].release()
        assert isinstance(take([Limit("test:ip:1", 5, 300)]), Ticket)


def test_one_attacker_cannot_lock_a_user_out_from_everywhere(web_app):
    register(web_app.test_client(), "alice")
    attacker = web_app.test_client()
    body = {"username": "alice", "password": "not alice's password"}
    statuses = [
        attacker.post(
            "/api/v1/tokens", json=body, environ_base={"REMOTE_ADDR": "192.0.2.66"}
        ).status_code
        for _ in range(60)
    ]
    assert statuses == [401] * 5 + [429] * 55
    owner = web_app.test_client()
    response = owner.post(
        "/api/v1/tokens",
        json={"username": "alice", "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert response.status_code == 201
