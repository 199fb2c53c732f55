"""Synthetic colour fundus photographs with diabetic-retinopathy lesions drawn by ICDR rules.

Used to demonstrate and benchmark retinascreen where no real data can be downloaded. Grade,
anatomy, lesions and camera come from independent random streams, so nothing but the
lesions tells the grades apart (no colour, size, noise, blur or compression shortcut).
"""

from __future__ import annotations

from retinascreen.synthetic.acquisition import UNGRADABLE_KINDS
from retinascreen.synthetic.frame import QUADRANTS, quadrant_map
from retinascreen.synthetic.generator import (
    APTOS_GRADE_MIX,
    Sample,
    draw_grade,
    fellow_eye_grade,
    generate,
)
from retinascreen.synthetic.layouts import (
    BENCHMARKS,
    KAGGLE_FOLDER_NAMES,
    LAYOUTS,
    generator_sha256,
    plan_dataset,
    write_benchmark,
    write_dataset,
)
from retinascreen.synthetic.lesions import LESIONS

__all__ = [
    "APTOS_GRADE_MIX",
    "BENCHMARKS",
    "KAGGLE_FOLDER_NAMES",
    "LAYOUTS",
    "generator_sha256",
    "plan_dataset",
    "write_benchmark",
    "write_dataset",
    "LESIONS",
    "QUADRANTS",
    "UNGRADABLE_KINDS",
    "Sample",
    "draw_grade",
    "fellow_eye_grade",
    "generate",
    "quadrant_map",
]
