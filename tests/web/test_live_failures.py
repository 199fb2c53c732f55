"""A real server on a bad day: its database file deleted, a worker killed mid-commit."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from tests.helpers.live_server import Reply, live_server
from tests.helpers.web import fundus_png


def test_a_deleted_database_is_503_and_nothing_is_saved(tmp_path, web_model_path):
    with live_server(tmp_path, web_model_path) as server:
        token = server.token()
        assert server.api_upload(token, fundus_png(1)).status == 201
        photos_before = sorted(p.name for p in server.photos.iterdir())

        for suffix in ("", "-wal", "-shm"):
            Path(f"{server.db_file}{suffix}").unlink(missing_ok=True)

        reply = server.api_upload(token, fundus_png(2))
        assert reply.status == 503, reply.text
        assert reply.json()["error"].startswith("Database unavailable")
        assert int(reply.headers["Retry-After"]) > 0
        assert sorted(p.name for p in server.photos.iterdir()) == photos_before
        assert not server.db_file.exists()  # never a fresh, empty database
        page = server.request("GET", "/auth/login")
        assert page.status in (200, 503) and "Traceback" not in page.text
        assert server.request("GET", "/healthz").status == 200  # alive, but...
        ready = server.request("GET", "/readyz")
        assert ready.status == 503 and ready.json()["checks"]["database"]["ok"] is False

        server.restart_workers()  # new workers open the database afresh: still 503, not 500
        reply = server.api_upload(token, fundus_png(3))
        assert reply.status == 503, reply.text
        assert "Retry-After" in reply.headers
        assert not server.db_file.exists()
        assert sorted(p.name for p in server.photos.iterdir()) == photos_before


def test_kill_9_while_the_commit_waits_leaves_no_orphan_photo(tmp_path, web_model_path):
    from retinascreen.web.server import prepare

    with live_server(tmp_path, web_model_path) as server:
        server.sign_in()  # the web form: its requests write nothing before the upload itself
        lock = sqlite3.connect(server.db_file, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # hold the write lock: the upload's commit waits on it
        replies: list[Reply | Exception] = []

        def upload() -> None:
            try:
                replies.append(server.form_upload(fundus_png(4), timeout=30))
            except Exception as exc:  # the connection dies with the worker
                replies.append(exc)

        thread = threading.Thread(target=upload)
        thread.start()
        deadline = time.monotonic() + 60
        while not any(server.photos.iterdir()):  # photo and heat map written, commit waiting
            assert time.monotonic() < deadline and thread.is_alive(), replies
            time.sleep(0.02)
        time.sleep(0.3)
        server.kill_workers()
        lock.execute("ROLLBACK")
        lock.close()
        thread.join(30)
        assert not isinstance(replies[0], Reply) or replies[0].status >= 500

        rows = sqlite3.connect(server.db_file).execute("SELECT count(*) FROM screenings")
        assert rows.fetchone()[0] == 0
        published = [p.name for p in server.photos.iterdir() if not p.name.startswith(".")]
        assert published == []  # no photo without its row, even before the sweep
        server.stop()

    prepare(server.instance, None, str(web_model_path))  # what `serve` does at start-up
    assert list(server.photos.iterdir()) == []
