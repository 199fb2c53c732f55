"""``retinascreen watch``: complete files only, a visit per patient and day, each photo once,
and a kill -9 in the middle of a batch loses and repeats nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from retinascreen.cli import main
from retinascreen.serving.watchfolder import FolderWatcher, identify
from tests.helpers.dicom_files import dicom_bytes
from tests.helpers.drawing import draw_fundus
from tests.helpers.live_server import PASSWORD, USERNAME
from tests.helpers.web import fundus_png


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    from retinascreen.web.accounts import create_admin

    folder = tmp_path / "instance"
    create_admin(USERNAME, PASSWORD, instance=folder)
    return folder


def _ledger(instance: Path) -> list[tuple]:
    with sqlite3.connect(instance / "retinascreen.db") as db:
        try:
            return db.execute(
                "SELECT key, state, screening_id, patient_id, eye, visit_date, name "
                "FROM intake_files ORDER BY id"
            ).fetchall()
        except sqlite3.OperationalError:  # the watcher has not created its table yet
            return []


def _screenings(instance: Path) -> list[tuple]:
    with sqlite3.connect(instance / "retinascreen.db") as db:
        return db.execute("SELECT id, patient_id, eye FROM screenings ORDER BY id").fetchall()


def _visits(instance: Path) -> dict[tuple[str, str], list[tuple[str | None, str]]]:
    """(patient, day) -> the (eye, field) of each photo of that visit."""
    with sqlite3.connect(instance / "retinascreen.db") as db:
        rows = db.execute(
            "SELECT p.pseudonym, v.visit_date, s.eye, s.field FROM visits v "
            "JOIN patients p ON p.id = v.patient_id JOIN screenings s ON s.visit_id = v.id "
            "ORDER BY v.id, s.id"
        ).fetchall()
    visits: dict[tuple[str, str], list[tuple[str | None, str]]] = {}
    for patient, day, eye, field in rows:
        visits.setdefault((patient, str(day)), []).append((eye, field))
    return visits


def _watch(folder: Path, instance: Path, model: Path, *extra: str) -> list[str]:
    return [
        "watch", str(folder), "--user", USERNAME, "--instance", str(instance),
        "--model", str(model), "--settle", "0.2", *extra,
    ]  # fmt: skip


def test_a_folder_is_screened_once_with_patient_eye_and_visit_from_names_folders_and_headers(
    tmp_path, instance, web_model_path
):
    camera = tmp_path / "camera"
    (camera / "P2").mkdir(parents=True)
    (camera / "P1_left.png").write_bytes(fundus_png(1))
    (camera / "P1_right.png").write_bytes(fundus_png(2))
    (camera / "copy of P1_left.png").write_bytes(fundus_png(1))  # same photo, another name
    (camera / "P2" / "IMG_0001.png").write_bytes(fundus_png(3))
    rgb = draw_fundus(96, seed=4)
    extra = {"PatientID": "P3", "ImageLaterality": "R", "StudyDate": "20260105"}
    (camera / "IMG_0002.dcm").write_bytes(dicom_bytes(rgb, extra=extra))
    (camera / ".P9_left.png.part").write_bytes(fundus_png(5))  # a copy still in progress

    assert main(_watch(camera, instance, web_model_path, "--once")) == 0
    ledger = _ledger(instance)
    assert [row[1] for row in ledger] == ["screened"] * 4
    who = {row[6]: (row[3], row[4]) for row in ledger}
    assert who["P1_left.png"] == ("P1", "left") and who["P1_right.png"] == ("P1", "right")
    assert who[str(Path("P2") / "IMG_0001.png")] == ("P2", None)
    assert who["IMG_0002.dcm"] == ("P3", "right")
    visits = {row[6]: row[5] for row in ledger}
    assert visits["IMG_0002.dcm"] == "2026-01-05"  # the header's day, not the file's
    assert visits["P1_left.png"] == visits["P1_right.png"]  # one visit for P1's two eyes
    screenings = _screenings(instance)
    assert sorted(s[0] for s in screenings) == sorted(row[2] for row in ledger)
    assert {(s[1], s[2]) for s in screenings} >= {("P1", "left"), ("P3", "right")}
    visits = _visits(instance)  # one visit per patient and day, with each photo's eye and field
    day = {row[3]: row[5] for row in ledger}
    assert visits == {
        ("P1", day["P1"]): [("left", "macula"), ("right", "macula")],
        ("P2", day["P2"]): [(None, "macula")],
        ("P3", "2026-01-05"): [("right", "macula")],
    }

    assert main(_watch(camera, instance, web_model_path, "--once")) == 0  # again: nothing new
    assert len(_screenings(instance)) == 4 and len(_ledger(instance)) == 4


def test_a_photo_is_read_only_once_the_camera_has_finished_writing_it(tmp_path):
    from retinascreen.data.images import load_image

    folder = tmp_path / "camera"
    folder.mkdir()
    data = fundus_png(7)
    path = folder / "P4_left.png"
    path.write_bytes(data[: len(data) // 2])  # the camera is half way
    read: list[bytes] = []

    def handle(p: Path) -> None:
        load_image(p.read_bytes(), name=p.name)  # raises TruncatedImageError on half a PNG
        read.append(p.read_bytes())

    watcher = FolderWatcher(folder, handle, settle=0.3, grace=30)
    watcher.scan()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        watcher.step()
        time.sleep(0.05)
    assert read == []  # quiet long enough, but truncated: still waiting
    path.write_bytes(data)  # the camera finishes
    deadline = time.monotonic() + 10
    while not read and time.monotonic() < deadline:
        watcher.step()
        time.sleep(0.05)
    assert read == [data]


def test_identify_prefers_the_dicom_header_over_the_name(tmp_path):
    rgb = draw_fundus(64, seed=1)
    data = dicom_bytes(rgb, extra={"PatientID": "HDR-1", "Laterality": "L"})
    path = tmp_path / "NAME-9_right.dcm"
    path.write_bytes(data)
    who = identify(path, tmp_path, data)
    assert (who.patient_id, who.eye) == ("HDR-1", "left")


def test_kill_9_in_the_middle_of_a_batch_then_restart_screens_every_photo_exactly_once(
    tmp_path, instance, web_model_path
):
    camera = tmp_path / "camera"
    camera.mkdir()
    photos = 8
    command = [sys.executable, "-m", "retinascreen", *_watch(camera, instance, web_model_path)]
    log = (tmp_path / "watch.log").open("wb")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 240
        while "watching" not in (tmp_path / "watch.log").read_text() and process.poll() is None:
            assert time.monotonic() < deadline, "the watcher did not start"
            time.sleep(0.2)
        for i in range(photos):  # the camera writes a batch (temporary name, then rename)
            part = camera / f".V{i}_left.png.part"
            part.write_bytes(fundus_png(10 + i))
            part.rename(camera / f"V{i}_left.png")
        done = 0
        while done == 0:
            assert process.poll() is None, (tmp_path / "watch.log").read_text()
            assert time.monotonic() < deadline, "nothing was screened"
            done = len(_ledger(instance))
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    at_kill = len(_ledger(instance))
    assert 0 < at_kill < photos, f"killed after {at_kill} of {photos}: not mid-batch"

    assert main(_watch(camera, instance, web_model_path, "--once")) == 0  # the restart
    ledger = _ledger(instance)
    assert sorted(row[6] for row in ledger) == [f"V{i}_left.png" for i in range(photos)]
    assert len({row[0] for row in ledger}) == photos  # one row per photo content
    screenings = _screenings(instance)
    assert len(screenings) == photos  # every photo screened, none twice
    assert sorted(s[0] for s in screenings) == sorted(row[2] for row in ledger)
    visits = _visits(instance)
    assert sorted(p for p, _ in visits) == [f"V{i}" for i in range(photos)]
    assert all(eyes == [("left", "macula")] for eyes in visits.values())


def test_files_a_kill_left_staged_after_the_commit_are_published_on_restart(
    tmp_path, instance, web_model_path
):
    from retinascreen.web.intake import ScreeningSink

    camera = tmp_path / "camera"
    camera.mkdir()
    (camera / "S1_left.png").write_bytes(fundus_png(21))
    assert main(_watch(camera, instance, web_model_path, "--once")) == 0
    photos = instance / "photos"
    published = sorted(p for p in photos.iterdir() if not p.name.startswith("."))
    assert published
    for path in published:  # as if killed after the commit, before the rename
        path.rename(photos / f".{path.name}.staged")
    sink = ScreeningSink(USERNAME, instance=instance, model=str(web_model_path))
    sink.close()
    assert sorted(p for p in photos.iterdir() if not p.name.startswith(".")) == published
