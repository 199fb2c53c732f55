"""``retinascreen calibrate``: a site's recalibrated copy, used by predict and evaluate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from retinascreen.cli import main
from retinascreen.data.images import save_image
from retinascreen.models.calibration import scale_probabilities
from retinascreen.models.modelcard import read_card, write_card
from retinascreen.serving.export import export_model
from retinascreen.serving.predictor import Predictor
from tests.helpers.models import make_model, photo_array, save_model

N_PHOTOS = 64
ORIGINAL_THRESHOLD = 0.02  # refers (nearly) every eye, like the bundled model elsewhere


def _write_site(root, predictor, n=N_PHOTOS, start=0):
    """A graded site sample in the ``folders`` layout, two eyes per patient.

    The grades follow the model's ranking loosely: the 45 % of photos it finds most referable
    are graded 2-4, the rest 0-1, so a threshold for 90 % sensitivity lies well above 0.02.
    """
    arrays = [photo_array(start + i) for i in range(n)]
    scores = [predictor.predict(a).referable_probability for a in arrays]
    order = np.argsort(scores)[::-1]
    referable = set(order[: int(0.45 * n)].tolist())
    for i, array in enumerate(arrays):
        grade = 2 + i % 3 if i in referable else i % 2
        eye = "L" if i % 2 == 0 else "R"
        save_image(root / str(grade) / f"P{i // 2:03d}_{eye}.png", array)
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    keras_path = save_model(make_model(seed=4), root / "tiny.keras")
    card = read_card(keras_path)
    card.extra["referable_threshold"] = ORIGINAL_THRESHOLD
    write_card(keras_path, card)
    onnx_path = root / "tiny.onnx"
    export_model(keras_path, onnx_path)
    data = _write_site(root / "clinic", Predictor(keras_path))
    return {"root": root, "keras": keras_path, "onnx": onnx_path, "data": data}


def _calibrate(model, data, *extra):
    return main(
        [
            "calibrate",
            str(model),
            "--data",
            str(data),
            "--format",
            "folders",
            "--bootstrap",
            "50",
            *extra,
        ]
    )


@pytest.mark.parametrize("kind", ["keras", "onnx"])
def test_calibrated_copy_records_the_site_and_predict_follows_it(site, kind, tmp_path, capsys):
    model = site[kind]
    out = tmp_path / f"clinic-a.{kind}"
    before = model.read_bytes()
    status = _calibrate(model, site["data"], "--site", "Clinic A", "--out", str(out))
    printed = capsys.readouterr().out
    assert status == 0
    assert model.read_bytes() == before  # the input model is never touched
    assert "threshold" in printed and "specificity" in printed and "ECE" in printed

    card = read_card(out)
    record = card.extra["site_calibration"]
    assert record["site"] == "Clinic A"
    assert (record["photos"], record["patients"]) == (N_PHOTOS, N_PHOTOS // 2)
    assert record["target_sensitivity"] == 0.9 and record["date"]
    for name in ("before", "after"):
        for key in ("sensitivity", "specificity", "auc", "qwk"):
            low, high = record[name]["intervals"][key]
            assert low <= high and low - 0.1 <= record[name][key] <= high + 0.1
    assert record["after"]["sensitivity"] >= 0.9
    assert record["before"]["threshold"] == ORIGINAL_THRESHOLD
    threshold = card.extra["referable_threshold"]
    assert threshold == record["threshold"] > ORIGINAL_THRESHOLD + 0.1
    assert card.extra["output_temperature"] == record["temperature"] > 0
    assert card.name == read_card(model).name  # still the same model, recalibrated
    report = json.loads((tmp_path / f"clinic-a.{kind}.calibration.json").read_text())
    assert report["threshold"] == threshold and report["site"] == "Clinic A"

    # The copy is the same kind of file and applies its temperature to the model's output.
    calibrated, original = Predictor(out), Predictor(model)
    assert calibrated.engine == original.engine == kind
    pixels = np.stack([calibrated.preprocess(photo_array(i)) for i in range(6)])
    raw = original.predict_arrays(pixels)
    expected = scale_probabilities(raw, record["temperature"], "softmax")
    np.testing.assert_allclose(calibrated.predict_arrays(pixels), expected, atol=1e-5)

    # predict's referral follows the calibrated threshold: fewer eyes referred than before.
    photos = sorted(site["data"].rglob("*.png"))
    main(["predict", str(model), *map(str, photos), "--json"])
    old = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    main(["predict", str(out), *map(str, photos), "--json"])
    new = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    main(["predict", str(out), str(photos[0])])
    header = capsys.readouterr().err
    assert f"Recalibrated for Clinic A on {record['date']} with {N_PHOTOS} of its" in header
    assert all(r["referable"] == (r["referable_probability"] >= threshold) for r in new)
    assert all(r["referral_rule"]["threshold"] == threshold for r in new)
    assert sum(r["referable"] for r in old) >= N_PHOTOS - 2
    assert sum(r["referable"] for r in new) <= 0.75 * N_PHOTOS


def test_evaluate_uses_the_calibrated_threshold(site, tmp_path, capsys):
    out = tmp_path / "clinic.keras"
    assert _calibrate(site["keras"], site["data"], "--out", str(out)) == 0
    threshold = read_card(out).extra["referable_threshold"]
    results = {}
    for name, model in (("original", site["keras"]), ("calibrated", out)):
        folder = tmp_path / f"eval-{name}"
        args = ["evaluate", str(model), "--data", str(site["data"]), "--format", "folders"]
        assert main([*args, "--split", "all", "--out", str(folder)]) == 0
        results[name] = json.loads((folder / "metrics.json").read_text())["referable"]
    capsys.readouterr()
    assert results["calibrated"]["threshold"] == threshold
    assert results["calibrated"]["threshold_rule"] == "the model card's referable threshold"
    assert results["calibrated"]["sensitivity"] >= 0.8
    assert results["calibrated"]["specificity"] > results["original"]["specificity"] + 0.3


def test_default_output_sits_beside_the_model_and_is_never_overwritten(site, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    model.write_bytes(site["onnx"].read_bytes())
    assert _calibrate(model, site["data"], "--site", "North clinic") == 0
    written = tmp_path / "m-North-clinic.onnx"
    assert read_card(written).extra["site_calibration"]["site"] == "North clinic"
    assert (tmp_path / "m-North-clinic.onnx.calibration.json").is_file()
    capsys.readouterr()
    # Again: the copy exists, so it is refused without --force; the input itself never.
    assert _calibrate(model, site["data"], "--site", "North clinic") == 2
    assert "--force" in capsys.readouterr().err
    assert _calibrate(model, site["data"], "--out", str(model), "--force") == 2
    assert "is the input model" in capsys.readouterr().err
    assert _calibrate(model, site["data"], "--out", str(tmp_path / "x.keras")) == 2
    assert "must be a .onnx file" in capsys.readouterr().err


def _expect_error(model, data, capsys, *needles, extra=()):
    out = data.parent / "refused.keras"
    status = _calibrate(model, data, "--out", str(out), *extra)
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ")
    assert all(n in err for n in needles), err
    assert not out.exists()  # nothing written


def test_too_small_or_one_sided_samples_are_refused(site, tmp_path, capsys):
    small = tmp_path / "small"
    for i in range(20):
        save_image(small / str(2 * (i % 2)) / f"p{i}.png", photo_array(i))
    _expect_error(site["keras"], small, capsys, "20 gradable photos", "at least 50")

    healthy = tmp_path / "healthy"
    for i in range(55):
        save_image(healthy / str(i % 2) / f"p{i}.png", photo_array(i))
    _expect_error(site["keras"], healthy, capsys, "non-referable", "both referable")

    _expect_error(
        site["keras"],
        site["data"],
        capsys,
        "target-sensitivity",
        extra=("--target-sensitivity", "0"),
    )


def test_a_sample_of_ungradable_photos_is_refused(site, tmp_path, capsys):
    dark = tmp_path / "dark"
    for i in range(60):
        save_image(dark / str(2 * (i % 2)) / f"p{i}.png", np.full((96, 96, 3), 4, np.uint8))
    _expect_error(site["keras"], dark, capsys, "all 60 photos", "ungradable")
