"""Liveness, readiness and the error answers of the app (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import sqlite3

from tests.helpers.web import make_app


def test_readyz_is_200_with_every_check_on_each_database(db_app):
    reply = db_app.test_client().get("/readyz")
    assert reply.status_code == 200, reply.get_json()
    checks = reply.get_json()["checks"]
    assert all(check["ok"] for check in checks.values())
    assert checks["schema"]["revision"]


def test_readyz_is_503_before_the_schema_is_migrated(tmp_path, web_predictor, web_database_url):
    from retinascreen.web import dispose

    if web_database_url.startswith("sqlite"):
        (tmp_path / "instance").mkdir()
        sqlite3.connect(tmp_path / "instance" / "retinascreen.db").close()  # empty, unmigrated
    app = make_app(tmp_path / "instance", web_predictor, web_database_url, AUTO_MIGRATE=False)
    try:
        client = app.test_client()
        assert client.get("/healthz").status_code == 200  # alive: a restart would not help
        reply = client.get("/readyz")
        assert reply.status_code == 503 and reply.headers["Retry-After"]
        checks = reply.get_json()["checks"]
        assert checks["database"]["ok"] is True
        assert checks["schema"] == {
            "ok": False,
            "revision": None,
            "head": checks["schema"]["head"],
            "detail": "schema is not at head",
        }
    finally:
        dispose(app)


def test_without_a_database_file_nothing_but_migrate_creates_one(tmp_path, web_predictor):
    from retinascreen.web import dispose

    app = make_app(tmp_path / "instance", web_predictor, AUTO_MIGRATE=False)
    try:
        client = app.test_client()
        reply = client.post("/api/v1/tokens", json={"username": "someone", "password": "pw"})
        assert reply.status_code == 503 and reply.get_json()["error"].startswith("Database")
        assert client.get("/auth/login").status_code in (200, 503)
        assert client.get("/readyz").get_json()["checks"]["database"]["ok"] is False
        assert not (tmp_path / "instance" / "retinascreen.db").exists()
    finally:
        dispose(app)


def test_an_unexpected_error_is_500_json_with_a_logged_reference(web_app, caplog):
    web_app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)

    @web_app.get("/api/v1/boom")
    def boom() -> str:
        raise ZeroDivisionError("a bug")

    with caplog.at_level(logging.ERROR, logger="retinascreen.web.handlers"):
        reply = web_app.test_client().get("/api/v1/boom")
    assert reply.status_code == 500
    body = reply.get_json()
    assert body["error"].startswith("Internal error") and body["reference"] in body["error"]
    assert body["reference"] in caplog.text and "ZeroDivisionError" in caplog.text


def test_an_unreachable_postgresql_is_503_not_500(tmp_path, web_predictor):
    from retinascreen.web import dispose
    from tests.helpers.live_server import free_port

    url = f"postgresql+psycopg://nobody:nothing@127.0.0.1:{free_port()}/retinascreen"
    app = make_app(tmp_path / "instance", web_predictor, url, AUTO_MIGRATE=False)
    try:
        client = app.test_client()
        reply = client.post("/api/v1/tokens", json={"username": "someone", "password": "pw"})
        assert reply.status_code == 503 and reply.headers["Retry-After"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.get_json()["checks"]["database"]["ok"] is False
    finally:
        dispose(app)
