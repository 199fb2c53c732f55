"""``retinascreen quality`` and ``retinascreen preprocess`` on real files, good and bad."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retinascreen.cli import main
from retinascreen.data.fundus import QUALITY_THRESHOLDS
from retinascreen.data.images import load_image, save_image
from tests.helpers.drawing import draw_face, draw_fundus


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    save_image(folder / "good.png", draw_fundus(128))
    save_image(folder / "clipped.jpg", draw_fundus(120, 160, radius=75))
    save_image(folder / "dark.png", draw_fundus(128, gain=0.15))
    save_image(folder / "face.jpg", draw_face(128))
    (folder / "notes.jpg").write_text("not a photo\n")
    (folder / "empty.png").write_bytes(b"")
    return folder


def test_quality_prints_one_json_line_per_image(photos, capsys):
    status = main(["quality", str(photos / "good.png"), str(photos / "dark.png")])
    out = capsys.readouterr()
    assert status == 0 and out.err == ""
    lines = [json.loads(line) for line in out.out.splitlines()]
    assert [line["path"] for line in lines] == [str(photos / "good.png"), str(photos / "dark.png")]
    assert lines[0] == {
        "path": str(photos / "good.png"),
        "gradable": True,
        "score": lines[0]["score"],
        "reasons": [],
        "measures": lines[0]["measures"],
        "label": lines[0]["label"],
    }
    # Each measure behind the verdict is reported, so a user can see why (issue 10), with the
    # learned score and EyeQ's three-way label (issue 23).
    assert set(lines[0]["measures"]) == {*QUALITY_THRESHOLDS, "learned"}
    assert lines[0]["label"] in ("good", "usable") and lines[1]["label"] == "reject"
    assert lines[1]["measures"]["brightness"] < QUALITY_THRESHOLDS["brightness"][0]
    assert 0.5 <= lines[0]["score"] <= 1
    assert lines[1]["gradable"] is False and lines[1]["reasons"] == ["too dark"]
    assert 0 <= lines[1]["score"] < 0.5


def test_quality_reports_bad_files_and_keeps_going(photos, capsys):
    names = ["notes.jpg", "good.png", "empty.png", "face.jpg", "clipped.jpg", "missing.png"]
    status = main(["quality", *(str(photos / n) for n in names)])
    out = capsys.readouterr()
    assert status == 2
    judged = {json.loads(line)["path"]: json.loads(line) for line in out.out.splitlines()}
    assert judged[str(photos / "good.png")]["gradable"] is True
    assert judged[str(photos / "clipped.jpg")]["gradable"] is True
    assert judged[str(photos / "face.jpg")]["reasons"] == ["no fundus disc found"]
    errors = out.err.splitlines()
    assert all(line.startswith("error: ") for line in errors)
    assert len(errors) == 4  # notes, empty, face (not a fundus), missing
    assert any("notes.jpg" in e and "not an image" in e for e in errors)
    assert any("empty.png" in e and "empty" in e for e in errors)
    assert any("face.jpg" in e and "fundus" in e for e in errors)
    assert any("missing.png" in e for e in errors)
    assert "Traceback" not in out.err


def test_quality_accepts_a_folder(photos, capsys):
    status = main(["quality", str(photos)])
    out = capsys.readouterr()
    assert status == 2  # the folder holds bad files too
    assert len(out.out.splitlines()) == 4  # good, clipped, dark, face


def test_preprocess_writes_square_crops(photos, tmp_path, capsys):
    out_dir = tmp_path / "crops"
    status = main(
        [
            "preprocess",
            str(photos / "good.png"),
            str(photos / "clipped.jpg"),
            "--out",
            str(out_dir),
            "--size",
            "64",
        ]
    )
    assert status == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["clipped.png", "good.png"]
    assert capsys.readouterr().out.splitlines() == [
        str(out_dir / "good.png"),
        str(out_dir / "clipped.png"),
    ]
    crop = load_image(out_dir / "clipped.png")
    assert crop.shape == (64, 64, 3)
    assert crop[:3, 28:36].max() == 0 and crop[28:36, 28:36].mean() > 60  # padded, centred


def test_preprocess_options_change_the_output(photos, tmp_path):
    plain, enhanced = tmp_path / "plain", tmp_path / "enhanced"
    assert main(["preprocess", str(photos / "good.png"), "--out", str(plain), "--size", "48"]) == 0
    assert (
        main(
            [
                "preprocess",
                str(photos / "good.png"),
                "--out",
                str(enhanced),
                "--size",
                "48",
                "--ben-graham",
                "--clahe",
            ]
        )
        == 0
    )
    a, b = load_image(plain / "good.png"), load_image(enhanced / "good.png")
    assert a.shape == b.shape == (48, 48, 3)
    assert (b[:2, :2] == 128).all() and not np.array_equal(a, b)


def test_preprocess_bad_files_write_nothing_and_the_rest_still_runs(photos, tmp_path, capsys):
    out_dir = tmp_path / "crops"
    status = main(["preprocess", str(photos), "--out", str(out_dir), "--size", "32"])
    err = capsys.readouterr().err
    assert status == 2
    # Only the real fundus photos are written; no temporary leftovers.
    assert sorted(p.name for p in out_dir.iterdir()) == ["clipped.png", "dark.png", "good.png"]
    assert len(err.splitlines()) == 3 and "face.jpg" in err and "notes.jpg" in err


def test_preprocess_refuses_bad_size(photos, tmp_path, capsys):
    status = main(
        ["preprocess", str(photos / "good.png"), "--out", str(tmp_path / "o"), "--size", "2"]
    )
    assert status == 2
    assert capsys.readouterr().err.startswith("error: --size")


def test_commands_have_help_with_an_example(capsys):
    for command in ("quality", "preprocess"):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert f"retinascreen {command}" in capsys.readouterr().out


def test_preprocess_never_overwrites_a_crop_from_another_file(photos, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    save_image(other / "good.jpg", draw_fundus(100, seed=5))
    out_dir = tmp_path / "crops"
    status = main(
        [
            "preprocess",
            str(photos / "good.png"),
            str(other / "good.jpg"),
            "--out",
            str(out_dir),
            "--size",
            "32",
        ]
    )
    assert status == 2
    assert "would overwrite" in capsys.readouterr().err
    assert [p.name for p in out_dir.iterdir()] == ["good.png"]
