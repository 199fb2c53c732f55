"""Mutation fuzz of the decoder: only retinascreen errors, no hangs, memory bounded by the limit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = 1500
MAX_PIXELS = 4_000_000
# An RGB decode holds the uint8 pixels plus at most a float32 copy while scaling 16-bit data.
BYTES_PER_PIXEL_BOUND = 24


def test_mutated_png_jpeg_tiff_webp_and_dicom_fail_only_with_clear_errors():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "data" / "fuzz_decoder.py")]
        + ["--cases", str(CASES), "--seed", "0", "--max-pixels", str(MAX_PIXELS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,  # a hang in C code the per-case alarm cannot interrupt ends here
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["cases"] == CASES
    assert report["foreign"] == [], "exceptions outside retinascreen.errors"
    assert report["hangs"] == [], "cases that ran past the per-case alarm"
    outcomes = report["outcomes"]
    assert outcomes.get("decoded", 0) > 100 and sum(outcomes.values()) == CASES
    bound_mb = BYTES_PER_PIXEL_BOUND * MAX_PIXELS / 2**20
    assert report["peak_rss_increase_mb"] < bound_mb, report
