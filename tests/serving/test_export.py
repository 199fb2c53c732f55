"""ONNX export: fp32 and int8 files that follow the Keras model, or a refusal that writes nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest

from retinascreen.cli import main
from retinascreen.errors import ConfigError, ExportAgreementError
from retinascreen.models.modelcard import read_card
from retinascreen.serving.export import EXPORT_METADATA_KEY, export_model
from retinascreen.serving.predictor import Predictor
from tests.helpers.models import make_model, save_model, write_photos


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    photos = write_photos(root / "calibration", 30)
    good = save_model(make_model(seed=2), root / "good.keras")
    ties = save_model(make_model(seed=3, near_ties=photos), root / "ties.keras")
    return {
        "root": root,
        "calibration": root / "calibration",
        "photos": photos,
        "good": good,
        "ties": ties,
    }


def _metadata(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_fp32_export_matches_keras_and_carries_the_card(setup, tmp_path):
    out = tmp_path / "sub" / "good.onnx"
    report = export_model(setup["good"], out, check=setup["calibration"])
    assert out.is_file() and report.precision == "fp32"
    assert report.agreement == 1.0 and report.n_checked == 30 and report.max_abs_diff < 1e-4
    card = read_card(out)
    assert card.name == "tiny" and card.synthetic is True
    assert json.loads(_metadata(out)[EXPORT_METADATA_KEY])["precision"] == "fp32"
    keras_probs = [
        r.probabilities for r in Predictor(setup["good"]).predict_batch(setup["photos"][:5])
    ]
    onnx_probs = [r.probabilities for r in Predictor(out).predict_batch(setup["photos"][:5])]
    assert np.abs(np.array(keras_probs) - np.array(onnx_probs)).max() < 1e-4


def test_int8_export_from_the_cli_reports_the_measured_agreement(setup, tmp_path, capsys):
    out = tmp_path / "good-int8.onnx"
    status = main(
        [
            "export",
            str(setup["good"]),
            "--format",
            "onnx",
            "--int8",
            "--min-agreement",
            "0",  # the int8 agreement itself depends on the CPU's int8 kernels (VNNI or not)
            "--calibration",
            str(setup["calibration"]),
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert status == 0, captured.err
    reported = re.search(
        r"grade agreement with Keras fp32: ([\d.]+)% of 6 held images", captured.out
    )
    assert reported, captured.out
    info = json.loads(_metadata(out)[EXPORT_METADATA_KEY])
    assert info["precision"] == "int8" and info["n_calibration"] == 24
    assert "int8" in read_card(out).extra["export"]["quantization"]
    model = onnx.load(str(out))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    # The reported figure is what a user gets: the int8 file's grades vs the Keras model's.
    held = setup["photos"][4::5]
    int8_grades = [r.grade for r in Predictor(out).predict_batch(held)]
    keras_grades = [r.grade for r in Predictor(setup["good"]).predict_batch(held)]
    agreement = np.mean(np.array(int8_grades) == np.array(keras_grades))
    assert float(reported.group(1)) == pytest.approx(100 * agreement, abs=0.05)
    assert info["grade_agreement"] == pytest.approx(agreement)


def test_int8_of_a_near_tie_model_is_refused_and_nothing_written(setup, tmp_path, capsys):
    out = tmp_path / "ties-int8.onnx"
    with pytest.raises(ExportAgreementError, match=r"only \d+\.\d% of 6 held images"):
        export_model(setup["ties"], out, int8=True, calibration=setup["calibration"])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp files left behind either
    status = main(
        [
            "export",
            str(setup["ties"]),
            "--int8",
            "--calibration",
            str(setup["calibration"]),
            "--out",
            str(out),
        ]
    )
    assert status == 2 and not out.exists()
    assert (
        capsys.readouterr().err.strip().splitlines()[-1].startswith("error: the int8 model agrees")
    )
    # The same model exported in fp32 keeps every grade: the refusal is quantisation's doing.
    fp32 = export_model(setup["ties"], tmp_path / "ties.onnx", check=setup["calibration"])
    assert fp32.agreement == 1.0


def test_int8_needs_calibration_and_onnx_suffix(setup, tmp_path):
    with pytest.raises(ConfigError, match="--calibration"):
        export_model(setup["good"], tmp_path / "x.onnx", int8=True)
    with pytest.raises(ConfigError, match=".onnx"):
        export_model(setup["good"], tmp_path / "x.bin")
