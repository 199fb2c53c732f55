"""``retinascreen predict``: human and JSON output, heat maps, every bad input of SPEC.md."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from retinascreen.cli import main
from retinascreen.data.images import load_image
from tests.helpers.models import (
    SIZE,
    make_model,
    save_model,
    write_bad_files,
    write_face,
    write_photos,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    model = save_model(make_model(seed=4), root / "tiny.keras")
    photos = write_photos(root / "photos", 2)
    return {"root": root, "model": model, "photos": photos}


def test_human_output_lists_top_grades_referable_and_quality(files, capsys):
    status = main(["predict", str(files["model"]), *map(str, files["photos"]), "--top", "2"])
    captured = capsys.readouterr()
    out = captured.out
    assert status == 0
    # What the model is, from its card: its name and what it was trained on.
    assert captured.err.startswith("model: ") and "trained on" in captured.err
    blocks = out.strip().split("\n" + str(files["photos"][1]))
    assert out.startswith(str(files["photos"][0]))
    assert len(blocks) == 2
    first = blocks[0].splitlines()
    assert first[1].startswith("  1. grade ") and first[1].endswith("%")
    assert first[2].startswith("  2. grade ") and "  3. grade" not in out
    assert any(line.startswith("  referable: ") for line in first)
    assert any(line.startswith("  quality: gradable (score ") for line in first)
    assert "synthetic" in out  # the card says synthetic: the user is warned


def test_human_output_says_why_a_referral_differs_from_the_grade(files, tmp_path, capsys):
    from retinascreen.models.modelcard import read_card, write_card
    from retinascreen.serving.predictor import Predictor

    photo = files["photos"][0]
    plain = Predictor(files["model"]).predict(photo)
    model = tmp_path / "thresholded.keras"
    shutil.copyfile(files["model"], model)
    card = read_card(model)
    p = plain.referable_probability
    card.extra["referable_threshold"] = p / 2 if plain.grade < 2 else (p + 1) / 2
    write_card(model, card)  # no target sensitivity in this card: that clause is left out
    assert main(["predict", str(model), str(photo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    why = [line for line in lines if line.startswith("  why: ")]
    start = "Referred although" if plain.grade < 2 else "Not referred although"
    assert len(why) == 1 and why[0].startswith(f"  why: {start} the predicted grade is ")
    assert "referral threshold" in why[0] and "chosen to catch" not in why[0]
    assert main(["predict", str(files["model"]), str(photo)]) == 0  # no threshold: no note
    assert "  why: " not in capsys.readouterr().out


def test_json_lines_and_cam_overlays(files, tmp_path, capsys):
    cams = tmp_path / "cams"
    status = main(
        ["predict", str(files["model"]), *map(str, files["photos"]), "--json", "--cam", str(cams)]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0 and len(lines) == 2
    results = [json.loads(line) for line in lines]
    assert [r["path"] for r in results] == [str(p) for p in files["photos"]]
    assert all(len(r["probabilities"]) == 5 and "quality" in r and "model" in r for r in results)
    from retinascreen.serving.predictor import Predictor

    expected = Predictor(files["model"]).predict(files["photos"][0]).to_dict()
    assert lines[0] == json.dumps({"path": str(files["photos"][0]), **expected})
    assert list(results[0]) == [
        "path",
        "grade",
        "label",
        "probabilities",
        "referable",
        "referable_probability",
        "gradable",
        "quality",
        "model",
        "referral_rule",
        "referral_note",
        "synthetic",
        "warning",
    ]
    for photo in files["photos"]:
        overlay = load_image(cams / f"{photo.stem}_cam.png")
        assert overlay.shape == (SIZE, SIZE, 3)


def test_every_bad_input_gets_an_error_line_and_the_rest_is_processed(files, tmp_path, capsys):
    bad = write_bad_files(tmp_path)
    face = write_face(tmp_path / "face.png")
    args = [str(bad[k]) for k in ("zero", "truncated", "text", "gif", "bomb")]
    status = main(
        ["predict", str(files["model"]), *args, str(face), str(files["photos"][0]), "--json"]
    )
    captured = capsys.readouterr()
    assert status == 2
    errors = captured.err.strip().splitlines()
    assert len(errors) == 6 and all(line.startswith("error: ") for line in errors)
    for key in ("zero", "truncated", "text", "gif", "bomb"):
        assert any(str(bad[key]) in line for line in errors)
    # a face is not graded as an ungradable fundus: it is refused, as by the web app
    refusal = f"error: {face}: this does not look like a fundus photograph"
    assert any(line.startswith(refusal) for line in errors)
    assert "Traceback" not in captured.err
    results = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert [r["path"] for r in results] == [str(files["photos"][0])]
    assert results[0]["gradable"] is True


def test_model_is_optional_and_run_directories_work(files, tmp_path, capsys, monkeypatch):
    from retinascreen.models import engines

    demo = tmp_path / "demo_model"
    demo.mkdir()
    monkeypatch.setattr(engines, "DEMO_DIR", demo)
    assert main(["predict", str(files["photos"][0])]) == 2
    assert "demo model is missing" in capsys.readouterr().err
    shutil.copy(files["model"], demo / "demo.keras")
    assert main(["predict", str(files["photos"][0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["name"] == "tiny"
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(files["model"], run / "best.keras")
    assert main(["predict", str(run), str(files["photos"][0]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["grade"] in range(5)


def test_console_command_runs_end_to_end(files):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "retinascreen",
            "predict",
            str(files["model"]),
            str(files["photos"][0]),
            str(files["root"] / "missing.png"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert proc.returncode == 2
    assert proc.stdout.startswith(str(files["photos"][0]))
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in proc.stderr
