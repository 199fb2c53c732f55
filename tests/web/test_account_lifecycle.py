"""Account identity and lifecycle: a deleted account's cookie and token open nothing (not even
an account that gets its id), tokens of a vanished account answer 401, administrators disable,
enable and delete accounts, usernames are unique regardless of case, the CSRF token changes at
sign-in, and the migration that brings all this fills existing databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import select, text

from retinascreen.cli import main
from retinascreen.web.models import ApiToken, AuditEvent, Screening, User
from tests.helpers.web import (
    PASSWORD,
    api_token,
    api_upload,
    bearer,
    csrf_token,
    fundus_png,
    login,
    register,
    stored_files,
    upload,
)


def rows(app, model):
    from retinascreen.web.db import session

    with app.app_context():
        return session().scalars(select(model)).all()


def operator_sql(app, statement: str, **params) -> None:
    """What an operator types into the database shell: on SQLite a plain connection, which
    does not enforce foreign keys (``sqlite3`` and the ``sqlite3`` shell default)."""
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite"):
        with sqlite3.connect(Path(app.instance_path) / "retinascreen.db") as conn:
            conn.execute(statement, params)
        return
    with app.extensions["retinascreen.engine"].begin() as conn:
        conn.execute(text(statement), params)


def signed_in_with_token(app, username: str):
    """A browser signed in as ``username`` (after registering it) and an API token."""
    client = app.test_client()
    register(client, username)
    return client, api_token(app.test_client(), username)


def test_a_deleted_accounts_cookie_and_token_do_not_open_the_next_account(web_app):
    """Issue 27 item 1: delete the newest account in SQL, let someone register; the deleted
    account's cookie and token must not open the new account (SQLite reused the id)."""
    alice, alice_token = signed_in_with_token(web_app, "alice")
    assert alice.get("/screenings").status_code == 200
    operator_sql(web_app, "DELETE FROM users WHERE username = 'alice'")

    bob = web_app.test_client()
    register(bob, "bob")
    assert upload(bob, fundus_png(2), patient_id="BOB-PATIENT-7").status_code == 303

    history = alice.get("/screenings")
    assert history.status_code == 302 and history.headers["Location"].startswith("/auth/login")
    assert "BOB-PATIENT-7" not in alice.get("/screenings", follow_redirects=True).get_data(
        as_text=True
    )
    listing = alice.get("/api/v1/screenings", headers=bearer(alice_token))
    assert listing.status_code == 401
    (user,) = rows(web_app, User)
    assert user.username == "bob" and user.id != 1  # SQLite ids are not reused (AUTOINCREMENT)


def test_an_account_given_a_deleted_accounts_id_inherits_nothing(db_app):
    """Even where an id does come back (an operator re-inserts rows by hand), sessions and
    tokens name the account by its random public id, which died with it."""
    from retinascreen.web.db import session
    from retinascreen.web.security import hash_password

    alice, alice_token = signed_in_with_token(db_app, "alice")
    (old,) = rows(db_app, User)
    operator_sql(db_app, "DELETE FROM users WHERE id = :id", id=old.id)
    with db_app.app_context():
        db = session()
        db.add(User(id=old.id, username="bob", password_hash=hash_password(PASSWORD)))
        db.commit()
    bob = db_app.test_client()
    assert login(bob, "bob").status_code == 302
    assert upload(bob, fundus_png(2), patient_id="BOB-PATIENT-7").status_code == 303

    assert alice.get("/screenings").status_code == 302
    assert alice.get("/api/v1/screenings", headers=bearer(alice_token)).status_code == 401
    assert bob.get("/screenings").status_code == 200


def test_a_token_whose_account_is_gone_is_401_everywhere_and_writes_no_audit_row(web_app):
    """Issue 27 item 5: GET, refresh and DELETE /tokens/current with such a token: 401."""
    _, token = signed_in_with_token(web_app, "alice")
    operator_sql(web_app, "DELETE FROM users WHERE username = 'alice'")
    client = web_app.test_client()
    before = len(rows(web_app, AuditEvent))
    assert client.get("/api/v1/screenings", headers=bearer(token)).status_code == 401
    assert client.post("/api/v1/tokens/refresh", headers=bearer(token)).status_code == 401
    reply = client.delete("/api/v1/tokens/current", headers=bearer(token))
    assert reply.status_code == 401 and reply.get_json()["error"]
    assert len(rows(web_app, AuditEvent)) == before


def admin(instance: str, *args: str) -> int:
    return main(["admin", *args, "--instance", instance])


def test_disable_ends_sessions_and_tokens_and_enable_lets_the_account_back(web_app, capsys):
    instance = web_app.instance_path
    browser, token = signed_in_with_token(web_app, "alice")
    assert admin(instance, "disable", "ALICE") == 0  # any case names the account
    assert "disabled" in capsys.readouterr().out

    assert browser.get("/screenings").status_code == 302
    assert browser.get("/api/v1/screenings", headers=bearer(token)).status_code == 401
    refused = login(web_app.test_client(), "alice")
    assert refused.status_code == 401 and "disabled" in refused.get_data(as_text=True)
    no_token = web_app.test_client().post(
        "/api/v1/tokens", json={"username": "alice", "password": PASSWORD}
    )
    assert no_token.status_code == 401 and "disabled" in no_token.get_json()["error"]

    assert admin(instance, "enable", "alice") == 0
    assert login(web_app.test_client(), "alice").status_code == 302
    assert browser.get("/api/v1/screenings", headers=bearer(token)).status_code == 401  # stays
    events = [e.event for e in rows(web_app, AuditEvent)]
    assert {"account_disabled", "login_disabled", "account_enabled"} <= set(events)


def test_delete_needs_a_decision_about_screenings_and_keeps_the_audit_trail(web_app, capsys):
    instance = web_app.instance_path
    browser, token = signed_in_with_token(web_app, "alice")
    assert api_upload(browser, token, fundus_png(1)).status_code == 201
    files = stored_files(web_app)
    assert files

    assert admin(instance, "delete", "alice") == 2
    assert "1 screenings" in capsys.readouterr().err and rows(web_app, Screening)

    assert admin(instance, "delete", "alice", "--screenings", "delete") == 0
    assert "deleted" in capsys.readouterr().out
    assert rows(web_app, User) == [] and rows(web_app, Screening) == []
    assert rows(web_app, ApiToken) == [] and stored_files(web_app) == []
    assert browser.get("/screenings").status_code == 302
    assert browser.get("/api/v1/screenings", headers=bearer(token)).status_code == 401
    trail = rows(web_app, AuditEvent)
    assert {"register", "screening", "account_deleted"} <= {e.event for e in trail}
    assert {e.username for e in trail} == {"alice"} and {e.user_id for e in trail} == {None}

    register(web_app.test_client(), "alice", sign_in=False)  # the name is free again
    (fresh,) = rows(web_app, User)
    assert fresh.username == "alice" and rows(web_app, Screening) == []


def test_delete_keeping_screenings_closes_the_account_for_good(web_app, capsys):
    instance = web_app.instance_path
    browser, token = signed_in_with_token(web_app, "alice")
    assert api_upload(browser, token, fundus_png(1)).status_code == 201
    assert admin(instance, "delete", "alice", "--screenings", "keep") == 0
    assert "1 screenings kept" in capsys.readouterr().out
    assert len(rows(web_app, Screening)) == 1
    assert browser.get("/screenings").status_code == 302
    assert browser.get("/api/v1/screenings", headers=bearer(token)).status_code == 401
    assert login(web_app.test_client(), "alice").status_code == 401
    assert admin(instance, "enable", "alice") == 2
    assert "cannot be enabled" in capsys.readouterr().err
    register(web_app.test_client(), "Alice", sign_in=False)
    assert [u.username for u in rows(web_app, User)] == ["alice"]  # the name is not reused


def test_lifecycle_commands_name_an_unknown_account(tmp_path, capsys):
    assert main(["admin", "disable", "nobody", "--instance", str(tmp_path)]) == 2
    assert "no account named 'nobody'" in capsys.readouterr().err


def test_usernames_are_unique_regardless_of_case_and_unicode_form(web_app, capsys):
    register(web_app.test_client(), "alice", sign_in=False)
    other = "another strong passphrase 9"
    register(web_app.test_client(), "ALICE", other, sign_in=False)
    assert [u.username for u in rows(web_app, User)] == ["alice"]
    assert login(web_app.test_client(), "ALICE", other).status_code == 401
    assert login(web_app.test_client(), "Alice").status_code == 302  # the one account
    assert login(web_app.test_client(), "\uff41\uff4c\uff49\uff43\uff45").status_code == 302
    argv = ["admin", "create", "Alice", "--password-stdin", "--instance", web_app.instance_path]
    import io
    import sys

    stdin, sys.stdin = sys.stdin, io.StringIO(other + "\n")
    try:
        assert main(argv) == 2
    finally:
        sys.stdin = stdin
    assert "already exists" in capsys.readouterr().err


def test_the_csrf_token_from_before_sign_in_is_void_after_it(web_app):
    """Issue 27 item 10: the token seen on the sign-in page cannot be used once signed in."""
    register(web_app.test_client(), "alice", sign_in=False)
    client = web_app.test_client()
    before = csrf_token(client, "/auth/login")
    form = {"csrf_token": before, "username": "alice", "password": PASSWORD}
    assert client.post("/auth/login", data=form).status_code == 302
    stale = client.post("/auth/logout", data={"csrf_token": before})
    assert stale.status_code == 400 and client.get("/screenings").status_code == 200
    fresh = client.post("/auth/logout", data={"csrf_token": csrf_token(client, "/screenings")})
    assert fresh.status_code == 302 and client.get("/screenings").status_code == 302


# -- the migration -------------------------------------------------------------------------------
def _database_at_0003(url: str) -> None:
    """A database migrated to the revision before accounts had public ids, with data."""
    from alembic import command

    from retinascreen.web.db import alembic_config, make_engine

    engine = make_engine(url, create=True, foreign_keys=False)
    try:
        with engine.begin() as conn:
            config = alembic_config(url)
            config.attributes["connection"] = conn
            command.upgrade(config, "0003_segmentation_overlays")
            now = "2026-01-01 00:00:00"
            for uid, name in ((1, "alice"), (2, "ALICE"), (3, "bob")):
                conn.execute(
                    text(
                        "INSERT INTO users (id, username, password_hash, is_admin, created) "
                        "VALUES (:id, :name, 'x', false, :now)"
                    ),
                    {"id": uid, "name": name, "now": now},
                )
            for tid, uid in ((1, 2), (2, 3)):
                conn.execute(
                    text(
                        "INSERT INTO api_tokens (id, user_id, token_sha256, created) "
                        "VALUES (:id, :uid, :sha, :now)"
                    ),
                    {"id": tid, "uid": uid, "sha": f"{tid:064d}", "now": now},
                )
            conn.execute(
                text(
                    "INSERT INTO screenings (id, user_id, created, grade, referable, "
                    "referable_probability, gradable, synthetic, result_json, photo_name, "
                    "model_name, model_version, model_sha256) VALUES (1, 3, :now, 0, false, 0.1, "
                    "true, false, '{}', 'p.png', 'm', '1', 'h')"
                ),
                {"now": now},
            )
            if url.startswith("postgresql"):  # rows inserted by id: move the sequence on
                conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), 3)"))
            if url.startswith("sqlite"):  # rows of an account deleted in SQL (id 7)
                conn.execute(
                    text(
                        "INSERT INTO audit_events (created, event, user_id) "
                        "VALUES (:now, 'login_success', 7)"
                    ),
                    {"now": now},
                )
    finally:
        engine.dispose()


def test_the_migration_fills_existing_accounts_and_tokens(tmp_path, web_database_url):
    from sqlalchemy.orm import Session

    from retinascreen.web.db import make_engine, upgrade

    (tmp_path / "instance").mkdir(exist_ok=True)
    _database_at_0003(web_database_url)
    engine = make_engine(web_database_url)
    try:
        upgrade(engine)
        with Session(engine) as db:
            users = {u.id: u for u in db.scalars(select(User))}
            assert [users[i].username for i in (1, 2, 3)] == ["alice", "ALICE-2", "bob"]
            ids = {u.public_id for u in users.values()}
            assert len(ids) == 3 and all(len(i) == 32 for i in ids)
            tokens = {t.id: t.user_public_id for t in db.scalars(select(ApiToken))}
            assert tokens == {1: users[2].public_id, 2: users[3].public_id}
            assert [s.user_id for s in db.scalars(select(Screening))] == [3]  # not cascaded
            renamed = db.scalars(select(AuditEvent).where(AuditEvent.event == "account_renamed"))
            assert [e.username for e in renamed] == ["ALICE-2"]
            db.add(User(username="carol", password_hash="x"))
            db.commit()
            carol = db.scalar(select(User).where(User.username == "carol"))
            assert carol is not None
            if web_database_url.startswith("sqlite"):
                assert carol.id == 8  # above id 7, still named by an audit row
                sql = db.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'users'"))
                assert "AUTOINCREMENT" in sql
    finally:
        engine.dispose()
