"""The start-up sweep of the photo folder finishes or undoes uploads a crash interrupted."""

from __future__ import annotations

import os
import uuid

from tests.helpers.live_server import PASSWORD
from tests.helpers.web import api_token, api_upload, bearer, fundus_png, make_app, stored_files


def test_start_up_publishes_committed_uploads_and_removes_orphans(
    tmp_path, web_predictor, web_database_url
):
    from retinascreen.web import dispose
    from retinascreen.web.accounts import create_admin

    instance = tmp_path / "instance"
    create_admin("chief", PASSWORD, database_url=web_database_url, instance=instance)
    app = make_app(instance, web_predictor, web_database_url)
    client = app.test_client()
    token = api_token(client, "chief", PASSWORD)
    created = api_upload(client, token, fundus_png(2))
    assert created.status_code == 201
    screening_id = created.get_json()["id"]
    store = app.extensions["retinascreen.photos"]
    photo = store.path(stored_files(app)[0])
    # A crash after the commit, before the rename: the committed photo is still staged.
    os.replace(photo, store.staging_path(photo.name))
    orphan = store.path(uuid.uuid4().hex + ".png")  # published by older code, never committed
    orphan.write_bytes(b"orphan")
    staged_orphan = store.staging_path(uuid.uuid4().hex + ".jpg")  # commit never happened
    staged_orphan.write_bytes(b"staged")
    foreign = store.folder / "README.txt"  # not ours: left alone
    foreign.write_text("kept")
    dispose(app)

    restarted = make_app(instance, web_predictor, web_database_url)  # start-up: migrate, sweep
    try:
        assert photo.exists() and not store.staging_path(photo.name).exists()
        assert not orphan.exists() and not staged_orphan.exists() and foreign.exists()
        reply = restarted.test_client().get(
            f"/api/v1/screenings/{screening_id}", headers=bearer(token)
        )
        assert reply.status_code == 200
    finally:
        dispose(restarted)
