"""Storage on both databases (SQLite file and PostgreSQL): migrations, restarts, atomic writes."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from retinascreen.web import dispose
from retinascreen.web.db import alembic_config
from tests.helpers.web import (
    api_token,
    api_upload,
    bearer,
    fundus_png,
    login,
    make_app,
    register,
    stored_files,
    upload,
)


def test_schema_comes_from_the_alembic_migration(db_app):
    engine = db_app.extensions["retinascreen.engine"]
    tables = set(inspect(engine).get_table_names())
    assert {"users", "api_tokens", "screenings", "audit_events", "alembic_version"} <= tables
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    columns = {c["name"] for c in inspect(engine).get_columns("screenings")}
    assert {"heatmap_name", "vessels_name", "lesions_name"} <= columns  # 0003's overlays


def test_data_survive_a_restart(tmp_path, web_predictor, web_database_url):
    instance = tmp_path / "instance"
    app = make_app(instance, web_predictor, web_database_url)
    client = app.test_client()
    register(client, "alice")
    sid = int(
        upload(client, fundus_png(2), patient_id="KEEP-1").headers["Location"].rsplit("/", 1)[1]
    )
    token = api_token(client, "alice")
    dispose(app)

    app = make_app(instance, web_predictor, web_database_url)  # a new process on the same data
    client = app.test_client()
    assert login(client, "alice").status_code == 302
    assert "KEEP-1" in client.get("/screenings").get_data(as_text=True)
    assert client.get(f"/screenings/{sid}/photo").data == fundus_png(2)
    listing = client.get("/api/v1/screenings", headers=bearer(token)).get_json()
    assert [s["patient_id"] for s in listing["screenings"]] == ["KEEP-1"]
    dispose(app)


def _fail_inserts(engine) -> None:
    """A real database failure: a trigger that refuses every new screening."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON screenings "
                    "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON screenings "
                    "FOR EACH ROW EXECUTE FUNCTION refuse()"
                )
            )


def test_a_failed_insert_leaves_no_photo_behind(db_app):
    client = db_app.test_client()
    register(client, "alice")
    token = api_token(client, "alice")
    _fail_inserts(db_app.extensions["retinascreen.engine"])
    with pytest.raises(DBAPIError):
        api_upload(client, token, fundus_png(0))
    assert stored_files(db_app) == []
    assert client.get("/api/v1/screenings", headers=bearer(token)).get_json()["total"] == 0


def test_rate_limit_holds_across_app_processes(tmp_path, web_predictor, db_app, web_database_url):
    register(db_app.test_client(), "alice")
    other = make_app(tmp_path / "other-worker", web_predictor, web_database_url)  # a second worker
    for app in (db_app, other, db_app, other, db_app):
        assert login(app.test_client(), "alice", "wrong password!").status_code == 401
    assert login(other.test_client(), "alice").status_code == 429
    dispose(other)


def test_screenings_of_two_users_stay_apart(db_app):
    clients = {}
    for name in ("alice", "bob"):
        client = db_app.test_client()
        register(client, name)
        clients[name] = (client, api_token(client, name))
    ids = {
        name: api_upload(c, t, fundus_png(i)).get_json()["id"]
        for i, (name, (c, t)) in enumerate(clients.items())
    }
    for name, (client, token) in clients.items():
        listing = client.get("/api/v1/screenings", headers=bearer(token)).get_json()
        assert [s["id"] for s in listing["screenings"]] == [ids[name]]


def test_database_urls_pick_psycopg_and_default_to_sqlite(tmp_path, monkeypatch):
    from retinascreen.web.config import database_url, normalise_database_url

    assert normalise_database_url("postgresql://u:p@db/x") == "postgresql+psycopg://u:p@db/x"
    assert normalise_database_url("postgres://u:p@db/x") == "postgresql+psycopg://u:p@db/x"
    assert normalise_database_url("postgresql+psycopg://db/x") == "postgresql+psycopg://db/x"
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert database_url({}, tmp_path) == f"sqlite:///{tmp_path / 'retinascreen.db'}"
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db/x")
    assert database_url({}, tmp_path) == "postgresql+psycopg://u:p@db/x"
    assert database_url({"DATABASE_URL": "sqlite:///other.db"}, tmp_path) == "sqlite:///other.db"


def test_alembic_command_line_migrates_the_database_url(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import retinascreen.web

    ini = Path(retinascreen.web.__file__).parent / "migrations" / "alembic.ini"
    db = tmp_path / "by-hand.db"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}"}
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ini), "upgrade", "head"],
        check=True,
        env=env,
        capture_output=True,
    )
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{db}")
    assert "screenings" in inspect(engine).get_table_names()
    engine.dispose()
