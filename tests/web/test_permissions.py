"""Patient data is private to the service account: folders 0700, files 0600 (issue 27 item 12)."""

from __future__ import annotations

import os
import stat

from tests.helpers.web import api_token, api_upload, fundus_png, make_app, register, stored_files


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_database_photos_and_their_folders_are_private(tmp_path, web_predictor):
    from retinascreen.web import dispose

    old_umask = os.umask(0o022)  # the usual umask: files would be 0644, folders 0755
    instance = tmp_path / "instance"
    app = make_app(instance, web_predictor)
    try:
        client = app.test_client()
        assert register(client, "alice").status_code == 302
        assert api_upload(client, api_token(client, "alice"), fundus_png()).status_code == 201
        database = instance / "retinascreen.db"
        side_files = [database.with_name(database.name + s) for s in ("-wal", "-shm")]
        assert all(p.exists() for p in side_files)  # WAL mode, a connection open
        photos = [instance / "photos" / name for name in stored_files(app)]
        assert photos
        assert {p.name: mode(p) for p in [database, *side_files, *photos]} == {
            p.name: 0o600 for p in [database, *side_files, *photos]
        }
        assert mode(instance) == 0o700 and mode(instance / "photos") == 0o700
    finally:
        os.umask(old_umask)
        dispose(app)


def test_files_an_older_version_left_readable_are_tightened_at_start_up(tmp_path, web_predictor):
    from retinascreen.web import dispose

    instance = tmp_path / "instance"
    app = make_app(instance, web_predictor)
    client = app.test_client()
    assert register(client, "alice").status_code == 302
    assert api_upload(client, api_token(client, "alice"), fundus_png()).status_code == 201
    dispose(app)
    photo = instance / "photos" / stored_files(app)[0]
    database = instance / "retinascreen.db"
    for path in (instance, instance / "photos"):
        path.chmod(0o755)
    for path in (database, photo):
        path.chmod(0o644)
    restarted = make_app(instance, web_predictor)  # start-up: migrate and sweep
    try:
        assert mode(instance) == mode(instance / "photos") == 0o700
        assert mode(database) == mode(photo) == 0o600
    finally:
        dispose(restarted)


def test_a_shared_sticky_folder_given_as_instance_is_not_narrowed(tmp_path):
    from retinascreen.web.private import private_folder

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: narrowing it would lock every other user out
    private_folder(shared)
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    private_folder(shared / "instance")
    assert mode(shared / "instance") == 0o700
