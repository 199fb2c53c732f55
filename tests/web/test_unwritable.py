"""A full disk and a read-only database: clear answers, /readyz 503, recovery without restart.

Issue 27 items 3 and 6. The disk-full cases inject the failure where it happens (ENOSPC at the
photo write, "database or disk is full" at the commit). The read-only cases use real files:
as a normal user with ``chmod``; as root (which ignores permission bits) with a read-only bind
mount, skipped where mounting is not allowed; and, everywhere, through SQLite's own
``PRAGMA query_only``, which refuses writes with the same "readonly database" error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import event

from retinascreen.web.writable import DISK_FULL, STORAGE_FULL_MESSAGE
from tests.helpers.web import (
    api_token,
    api_upload,
    fundus_png,
    login,
    make_app,
    register,
    stored_files,
    upload,
)


def _published(app) -> list[str]:
    return [name for name in stored_files(app) if not name.startswith(".")]


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def alice(web_app):
    client = web_app.test_client()
    assert register(client, "alice").status_code == 302
    return client, api_token(client, "alice")


def test_a_full_disk_at_the_photo_write_is_507_with_retry_after(web_app, alice, monkeypatch):
    client, token = alice
    monkeypatch.setattr("retinascreen.web.storage.write_private", _no_space)
    monkeypatch.setattr("retinascreen.web.writable.write_private", _no_space)
    reply = api_upload(client, token, fundus_png())
    assert reply.status_code == 507 and int(reply.headers["Retry-After"]) > 0
    assert reply.get_json()["error"] == STORAGE_FULL_MESSAGE
    page = upload(client, fundus_png())
    assert page.status_code == 507 and page.headers["Retry-After"]
    assert page.mimetype == "text/html" and "storage is full" in page.get_data(as_text=True)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"]["writable"] == {"ok": False, "detail": DISK_FULL}
    assert _published(web_app) == []
    monkeypatch.undo()  # space freed: no restart needed
    assert client.get("/readyz").status_code == 200
    assert api_upload(client, token, fundus_png()).status_code == 201


def test_a_full_disk_at_the_commit_is_507_and_nothing_is_half_written(web_app, alice, monkeypatch):
    client, token = alice
    dialect = web_app.extensions["retinascreen.engine"].dialect

    def full(connection):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(dialect, "do_commit", full)
    reply = api_upload(client, token, fundus_png())
    assert reply.status_code == 507 and reply.headers["Retry-After"]
    assert reply.get_json()["error"] == STORAGE_FULL_MESSAGE
    page = upload(client, fundus_png())
    assert page.status_code == 507 and "storage is full" in page.get_data(as_text=True)
    monkeypatch.undo()
    assert _published(web_app) == []  # the staged photos went with the failed commit
    listed = client.get("/api/v1/screenings", headers={"Authorization": f"Bearer {token}"})
    assert listed.get_json()["total"] == 0
    assert api_upload(client, token, fundus_png()).status_code == 201


def _query_only(engine):
    """From now on every new connection refuses writes ("attempt to write a readonly database")."""

    def on_connect(dbapi_connection, record):
        dbapi_connection.execute("PRAGMA query_only=ON")

    engine.dispose()
    event.listen(engine, "connect", on_connect)
    return on_connect


def test_a_read_only_database_is_503_in_readyz_and_recovers_without_restart(web_app, alice):
    client, token = alice
    engine = web_app.extensions["retinascreen.engine"]
    listener = _query_only(engine)
    for _ in range(3):  # several pooled connections, all read-only
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "read-only" in ready.get_json()["checks"]["writable"]["detail"]
    reply = api_upload(client, token, fundus_png())
    assert reply.status_code == 503 and reply.headers["Retry-After"]
    assert "cannot be written" in reply.get_json()["error"]
    # Writable again. The pooled connections opened read-only stay so for their life (as SQLite
    # keeps a file it opened read-only): a failed write discards them all, so at most one more
    # request fails and then the app works again.
    event.remove(engine, "connect", listener)
    answers = [client.get("/readyz").status_code for _ in range(3)]
    assert answers[-2:] == [200, 200], answers
    assert api_upload(client, token, fundus_png()).status_code == 201


# -- real read-only files ------------------------------------------------------------------------
@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only for this process: chmod as a user, a read-only bind mount as root."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    target = str(path)
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("running as root and no mount command to make a file read-only")
    bind = subprocess.run(["mount", "--bind", target, target], capture_output=True)
    if bind.returncode != 0:
        pytest.skip(f"running as root and cannot bind-mount read-only: {bind.stderr.decode()}")
    try:
        remount = subprocess.run(
            ["mount", "-o", "remount,bind,ro", target], capture_output=True, check=False
        )
        if remount.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remount.stderr.decode()}")
        yield
    finally:
        subprocess.run(["umount", "-l", target], check=False)


@pytest.fixture
def instance(tmp_path, web_predictor):
    """A migrated instance folder with one account, no app holding it open."""
    from retinascreen.web import dispose

    app = make_app(tmp_path / "instance", web_predictor)
    assert register(app.test_client(), "alice").status_code == 302
    dispose(app)
    return tmp_path / "instance"


@pytest.mark.parametrize("what", ["file", "folder"])
def test_serve_refuses_to_start_on_a_read_only_database(instance, web_model_path, what):
    from retinascreen.errors import ConfigError
    from retinascreen.web.server import prepare

    database = instance / "retinascreen.db"
    for suffix in ("-wal", "-shm"):  # a cleanly stopped server leaves none
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    with (
        read_only(database if what == "file" else instance),
        pytest.raises(ConfigError, match="cannot serve: .*read-only") as caught,
    ):
        prepare(instance, None, str(web_model_path))
    assert "writable by the service account" in str(caught.value)
    assert prepare(instance, None, str(web_model_path))["DATABASE_URL"]  # and starts once writable


def test_a_database_file_made_read_only_then_writable_again_needs_no_restart(
    instance, web_predictor
):
    from retinascreen.web import dispose

    app = make_app(instance, web_predictor, AUTO_MIGRATE=False)
    try:
        client = app.test_client()
        database = instance / "retinascreen.db"
        with read_only(database):
            app.extensions["retinascreen.engine"].dispose()  # connections open from now on
            ready = client.get("/readyz")
            assert ready.status_code == 503, ready.get_json()
            assert login(client, "alice").status_code == 503
        answers = [client.get("/readyz").status_code for _ in range(3)]
        assert answers[-2:] == [200, 200], answers
        assert login(client, "alice").status_code == 302
        token = api_token(client, "alice")
        assert api_upload(client, token, fundus_png()).status_code == 201
    finally:
        dispose(app)
