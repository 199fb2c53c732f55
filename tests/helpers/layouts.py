"""Tiny real data sets in each published layout, written with Pillow (for datasets/pipeline tests)."""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw

FOLDER_NAMES = ("No_DR", "Mild", "Moderate", "Severe", "Proliferate_DR")


def fundus_image(path: Path, seed: int, size: int = 64) -> Path:
    """A small fundus-like picture: an orange disc on black, with a seed-dependent spot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (size + 16, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    draw.ellipse((10, 2, size + 6, size - 2), fill=(190, 90 + seed % 40, 40))
    x, y = 20 + (seed * 7) % (size - 30), 15 + (seed * 3) % (size - 30)
    draw.ellipse((x, y, x + 6, y + 6), fill=(120, 20, 20))
    img.save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def grades_for(n: int) -> list[int]:
    return [i % 5 for i in range(n)]


def write_aptos(root: Path, n: int = 10, *, extra: bool = False) -> Path:
    rows = []
    for i, g in enumerate(grades_for(n)):
        code = f"a{i:03d}"
        fundus_image(root / "train_images" / f"{code}.png", i)
        rows.append(
            [code, g, f"p{i // 2}", "left" if i % 2 == 0 else "right"] if extra else [code, g]
        )
    header = ["id_code", "diagnosis"] + (["patient_id", "eye"] if extra else [])
    write_csv(root / "train.csv", header, rows, bom=True)
    return root


def write_eyepacs(root: Path, n_patients: int = 5) -> Path:
    rows = []
    for p in range(n_patients):
        for eye in ("left", "right"):
            name = f"{10 + p}_{eye}"
            fundus_image(root / "train" / f"{name}.jpeg", p * 2 + (eye == "right"))
            rows.append([name, p % 5])
    write_csv(root / "trainLabels.csv", ["image", "level"], rows)
    return root


def write_messidor2(root: Path, n: int = 8, ungradable: int = 2) -> Path:
    rows: list[list[object]] = []
    for i in range(n):
        name = f"20051020_{i:05d}_0100_PP.png" if i % 2 else f"IM{i:06d}.JPG"
        fundus_image(root / "IMAGES" / name, i)
        rows.append([name, i % 5, 0, 1])
    for j in range(ungradable):
        name = f"IMU{j:05d}.JPG"
        fundus_image(root / "IMAGES" / name, 100 + j)
        rows.append([name, "", "", 0])
    header = ["image_id", "adjudicated_dr_grade", "adjudicated_dme", "adjudicated_gradable"]
    write_csv(root / "messidor_data.csv", header, rows)
    return root


IDRID_CSV = Path("B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv")
IDRID_TEST_CSV = Path(
    "B. Disease Grading/2. Groundtruths/b. IDRiD_Disease Grading_Testing Labels.csv"
)
IDRID_IMAGES = Path("B. Disease Grading/1. Original Images/a. Training Set")
IDRID_TEST_IMAGES = Path("B. Disease Grading/1. Original Images/b. Testing Set")
IDRID_HEADER = ["Image name", "Retinopathy grade", "Risk of macular edema "]  # sic: the space


def write_idrid(root: Path, n: int = 6, n_test: int = 3) -> Path:
    """IDRiD's ``B. Disease Grading`` exactly as published, both splits.

    The training CSV has two trailing empty columns on every line and a blank row at the end;
    the testing CSV has neither. The testing set reuses the training set's names
    (IDRiD_001...) for other photos. Grades are ``i % 5``, macular-oedema risk ``i % 3``
    (training) and grade ``4 - i % 5``, risk ``2 - i % 3`` (testing).
    """
    rows: list[list[object]] = []
    for i in range(n):
        name = f"IDRiD_{i + 1:03d}"
        fundus_image(root / IDRID_IMAGES / f"{name}.jpg", i)
        rows.append([name, i % 5, i % 3, "", ""])
    write_csv(root / IDRID_CSV, [*IDRID_HEADER, "", ""], rows + [["", "", "", "", ""]])
    test_rows: list[list[object]] = []
    for i in range(n_test):
        name = f"IDRiD_{i + 1:03d}"
        fundus_image(root / IDRID_TEST_IMAGES / f"{name}.jpg", 50 + i)
        test_rows.append([name, 4 - i % 5, 2 - i % 3])
    write_csv(root / IDRID_TEST_CSV, IDRID_HEADER, test_rows)
    return root


def write_folders(root: Path, per_grade: int = 2, named: bool = True) -> Path:
    for g in range(5):
        folder = FOLDER_NAMES[g] if named else str(g)
        for k in range(per_grade):
            fundus_image(root / folder / f"img{g}_{k}.png", g * 10 + k)
    return root
