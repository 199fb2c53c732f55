"""The synthetic fundus generator: determinism, ICDR grade rules, no shortcuts, layouts, CLI."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from retinascreen.cli import main
from retinascreen.synthetic import (
    APTOS_GRADE_MIX,
    BENCHMARKS,
    LESIONS,
    QUADRANTS,
    UNGRADABLE_KINDS,
    Sample,
    generate,
    plan_dataset,
    quadrant_map,
    write_benchmark,
    write_dataset,
)
from retinascreen.synthetic.generator import render

NPDR_ONLY = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool")
SEVERE_SIGNS = ("venous_beading", "irma")
PROLIFERATIVE = ("neovascularisation", "preretinal_haemorrhage")


def present(sample: Sample) -> set[str]:
    return {name for name, mask in sample.masks.items() if mask.any()}


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# ----------------------------------------------------------------------------- determinism
def test_same_seed_gives_identical_pixels_and_masks_and_other_seeds_differ():
    a, b, c = generate(7, size=96), generate(7, size=96), generate(8, size=96)
    assert a.image.dtype == np.uint8 and a.image.shape[1] == 96 and a.image.shape[2] == 3
    assert np.array_equal(a.image, b.image)
    assert a.grade == b.grade and a.eye == b.eye and a.meta == b.meta
    assert set(a.masks) == set(LESIONS)
    assert all(np.array_equal(a.masks[k], b.masks[k]) for k in LESIONS)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("size", [64, 333, 1024])
def test_any_size_from_64_to_1024_is_drawn_at_that_width(size):
    sample = generate(3, 0, size=size)
    assert sample.image.shape[1] == size
    assert sample.image.shape[0] in (size, round(size * 3 / 4), round(size * 2 / 3))
    with pytest.raises(ValueError):
        generate(3, size=32)


# ----------------------------------------------------------------------------- grade rules
def test_grade_0_has_no_lesions_and_grade_1_only_microaneurysms():
    for seed in range(4):
        assert present(generate(seed, 0, size=128)) == set()
        assert present(generate(seed, 1, size=128)) == {"microaneurysm"}


def test_grade_2_is_more_than_microaneurysms_but_less_than_severe():
    for seed in range(6):
        sample = generate(seed, 2, size=128)
        found = present(sample)
        assert found & {"haemorrhage", "hard_exudate"}
        assert not found & set(SEVERE_SIGNS + PROLIFERATIVE)
        per_quadrant = sample.meta["lesions"].get("haemorrhage_per_quadrant", [0, 0, 0, 0])
        assert min(per_quadrant) < 20  # never the 4-quadrant haemorrhage pattern of severe NPDR


def test_grade_3_follows_the_4_2_1_rule_without_new_vessels():
    for seed in range(8):
        sample = generate(seed, 3, size=128)
        found = present(sample)
        assert not found & set(PROLIFERATIVE)
        quadrants = quadrant_map(sample.meta, sample.masks["haemorrhage"].shape)
        haem_quadrants = {int(q) for q in np.unique(quadrants[sample.masks["haemorrhage"]])}
        per_quadrant = sample.meta["lesions"].get("haemorrhage_per_quadrant", [0, 0, 0, 0])
        four_quadrants = min(per_quadrant) >= 20 and haem_quadrants == {0, 1, 2, 3}
        beading = len(sample.meta["lesions"].get("venous_beading_quadrants", [])) >= 2
        assert four_quadrants or (beading and found >= {"venous_beading"}) or "irma" in found


def test_grade_4_has_new_vessels_or_preretinal_haemorrhage():
    for seed in range(6):
        found = present(generate(seed, 4, size=128))
        assert found & set(PROLIFERATIVE)


def test_masks_lie_inside_the_field_of_view():
    sample = generate(11, 3, size=128)
    a = sample.meta["anatomy"]
    ys, xs = np.nonzero(np.any([sample.masks[k] for k in LESIONS], axis=0))
    assert (
        len(xs)
        and np.hypot(xs - a["fov_centre"][0], ys - a["fov_centre"][1]).max() <= a["fov_radius"] + 1
    )


# ----------------------------------------------------------------------------- no shortcuts
def test_for_one_seed_grades_differ_only_where_the_lesions_are():
    for seed in (5, 6):
        healthy, sick = render(seed, 0, size=128), render(seed, 4, size=128)
        assert (
            healthy.image.shape == sick.image.shape
            and healthy.meta["acquisition"] == sick.meta["acquisition"]
        )
        lesion = np.any([sick.masks[k] for k in LESIONS], axis=0).astype(np.uint8)
        near = cv2.dilate(lesion, np.ones((9, 9), np.uint8)).astype(bool)
        diff = np.abs(healthy.image.astype(int) - sick.image.astype(int)).max(axis=2)
        assert lesion.any() and diff[near].max() > 20  # the lesions are visible
        assert diff[~near].max() <= 3  # and nothing else changed


def _global_features(sample: Sample) -> list[float]:
    """Colour statistics of the retina with lesion pixels (and their halo) masked out."""
    img = sample.image.astype(np.float32)
    lesion = np.any([sample.masks[k] for k in LESIONS], axis=0).astype(np.uint8)
    retina = img.max(axis=2) > 20
    keep = retina & ~cv2.dilate(lesion, np.ones((7, 7), np.uint8)).astype(bool)
    pixels = img[keep]
    return [*pixels.mean(0), *pixels.std(0), float(retina.mean()), *img.shape[:2]]


def test_global_statistics_do_not_reveal_the_grade():
    samples = [generate(1000 + 13 * g + i, g, size=128) for g in range(5) for i in range(12)]
    grades = np.array([s.grade for s in samples])
    brightness = np.array(
        [s.image.astype(np.float32)[s.image.max(axis=2) > 20].mean() for s in samples]
    )
    within = np.mean([brightness[grades == g].std() for g in range(5)])
    assert abs(brightness[grades == 0].mean() - brightness[grades == 4].mean()) < 0.6 * within
    sizes = {g: Counter(s.image.shape[:2] for s in samples if s.grade == g) for g in range(5)}
    assert all(len(c) >= 1 for c in sizes.values())

    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([_global_features(s) for s in samples])
    referable = (grades >= 2).astype(int)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    accuracy = cross_val_score(model, x, referable, cv=5).mean()
    majority = max(referable.mean(), 1 - referable.mean())
    assert accuracy < majority + 0.12, (
        f"global colour statistics predict referable DR ({accuracy:.2f})"
    )


def test_acquisition_and_eye_do_not_depend_on_the_grade():
    metas = [render(42, g, size=64).meta for g in range(5)]
    assert all(m["acquisition"] == metas[0]["acquisition"] for m in metas)
    assert all(m["anatomy"] == metas[0]["anatomy"] for m in metas)


# ----------------------------------------------------------------------------- ungradable
def test_ungradable_photos_fail_the_quality_gate_and_normal_ones_pass():
    from retinascreen.data.fundus import assess_quality

    for seed in (1, 2):
        assert assess_quality(generate(seed, size=384).image).gradable
        for kind in UNGRADABLE_KINDS:
            sample = generate(seed, size=384, ungradable=kind)
            assert sample.ungradable == kind and sample.meta["ungradable"] == kind
            verdict = assess_quality(sample.image)
            assert not verdict.gradable, f"{kind} photo judged gradable: {verdict}"


def test_dark_and_overexposed_photos_are_what_they_say():
    normal = generate(9, size=96).image.mean()
    assert generate(9, size=96, ungradable="dark").image.mean() < 0.3 * normal
    assert generate(9, size=96, ungradable="overexposed").image.mean() > 1.4 * normal
    with pytest.raises(ValueError):
        generate(9, size=96, ungradable="foggy")


# ----------------------------------------------------------------------------- grade mix, patients
def test_grade_mix_is_aptos_like_and_eyes_come_in_correlated_pairs():
    plan = plan_dataset(400, seed=3)
    counts = Counter(item["grade"] for item in plan)
    for g, p in enumerate(APTOS_GRADE_MIX):
        assert abs(counts[g] / 400 - p) < 0.06, (g, counts)
    patients = Counter(item["patient"] for item in plan)
    assert set(patients.values()) == {2}
    pairs: dict[str, list[dict]] = {}
    for item in plan:
        pairs.setdefault(item["patient"], []).append(item)
    assert all({a["eye"], b["eye"]} == {"left", "right"} for a, b in pairs.values())
    same = np.mean([a["grade"] == b["grade"] for a, b in pairs.values()])
    assert 0.5 < same < 0.95  # correlated but not identical
    assert all(abs(a["grade"] - b["grade"]) <= 2 for a, b in pairs.values())
    uniform = plan_dataset(400, seed=3, grade_mix=(1, 1, 1, 1, 1))
    assert min(Counter(i["grade"] for i in uniform).values()) > 50


# ----------------------------------------------------------------------------- layouts
def _written_images(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".png", ".jpg", ".jpeg") and "masks" not in p.parts
    )


def test_every_layout_is_written_as_designed_and_reads_back(tmp_path):
    from retinascreen.data.datasets import load_dataset

    n = 6
    expect = {
        "aptos": ("train.csv", ["id_code", "diagnosis", "patient_id", "eye"]),
        "eyepacs": ("trainLabels.csv", ["image", "level"]),
        "messidor2": (
            "messidor_data.csv",
            ["image_id", "adjudicated_dr_grade", "adjudicated_dme", "adjudicated_gradable"],
        ),
        "idrid": (
            "B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv",
            ["Image name", "Retinopathy grade", "Risk of macular edema "],
        ),
    }
    out_of = {}
    for layout, (csv_name, columns) in expect.items():
        out = out_of[layout] = write_dataset(
            tmp_path / layout, n, size=64, seed=1, layout=layout, workers=1
        )
        header, rows = read_csv(out / csv_name)
        assert header[: len(columns)] == columns and len(rows) == n
        images = _written_images(out)
        assert len(images) == n
        records = load_dataset(out, layout)
        assert len(records) == n
        assert not list(out.rglob("*.tmp"))
    names = [r["image"] for r in read_csv(tmp_path / "eyepacs" / "trainLabels.csv")[1]]
    assert names[0] in ("1_left", "1_right") and {n.split("_")[0] for n in names} == {"1", "2", "3"}
    assert all((tmp_path / "eyepacs" / "train" / f"{n}.jpeg").is_file() for n in names)
    ids = [r["image_id"] for r in read_csv(tmp_path / "messidor2" / "messidor_data.csv")[1]]
    assert all(
        i.endswith(".png") and (tmp_path / "messidor2" / "IMAGES" / i).is_file() for i in ids
    )
    idrid = tmp_path / "idrid" / "B. Disease Grading" / "1. Original Images" / "a. Training Set"
    assert sorted(p.name for p in idrid.iterdir()) == [
        f"IDRiD_{i:03d}.jpg" for i in range(1, n + 1)
    ]
    # --format idrid keeps the written macular-oedema risk
    risks = [
        int(r["Risk of macular edema "]) for r in read_csv(out_of["idrid"] / expect["idrid"][0])[1]
    ]
    assert [r.macular_edema for r in load_dataset(out_of["idrid"], "idrid")] == risks
    _, aptos = read_csv(tmp_path / "aptos" / "train.csv")
    for row in aptos:
        assert (tmp_path / "aptos" / "train_images" / f"{row['id_code']}.png").is_file()
        for mask in (tmp_path / "aptos" / "masks").glob(f"{row['id_code']}_*.png"):
            assert mask.stem[len(row["id_code"]) + 1 :] in LESIONS
            assert cv2.imread(str(mask), cv2.IMREAD_GRAYSCALE).max() == 255
    manifest = json.loads((tmp_path / "aptos" / "synthetic.json").read_text())
    assert sum(manifest["grade_counts"].values()) == n


@pytest.mark.parametrize(
    "names, folders",
    [
        ("kaggle", {"No_DR", "Mild", "Moderate", "Severe", "Proliferate_DR"}),
        ("numeric", {"0", "1", "2", "3", "4"}),
    ],
)
def test_folders_layout_uses_kaggle_or_numeric_names(tmp_path, names, folders):
    from retinascreen.data.datasets import load_dataset

    out = write_dataset(
        tmp_path,
        10,
        size=64,
        seed=4,
        layout="folders",
        folder_names=names,
        grade_mix=(1, 1, 1, 1, 1),
        workers=1,
    )
    used = {p.parent.name for p in _written_images(out)}
    assert used <= folders and len(used) >= 3
    assert len(load_dataset(out, "folders")) == 10


def test_messidor2_marks_ungradable_rows_and_the_reader_excludes_them(tmp_path):
    from retinascreen.data.datasets import load_dataset

    out = write_dataset(tmp_path, 8, size=64, seed=2, layout="messidor2", ungradable=0.5, workers=1)
    _, rows = read_csv(out / "messidor_data.csv")
    bad = [r for r in rows if r["adjudicated_gradable"] == "0"]
    assert bad and all(r["adjudicated_dr_grade"] == "" for r in bad)
    assert len(load_dataset(out, "messidor2")) == len(rows) - len(bad)


def test_two_workers_write_the_same_data_set_as_one(tmp_path):
    one = write_dataset(tmp_path / "one", 4, size=64, seed=5, workers=1)
    two = write_dataset(tmp_path / "two", 4, size=64, seed=5, workers=2)
    assert (one / "train.csv").read_bytes() == (two / "train.csv").read_bytes()
    for a in _written_images(one):
        assert a.read_bytes() == (two / a.relative_to(one)).read_bytes()


# ----------------------------------------------------------------------------- benchmark, CLI
def test_benchmark_has_fixed_splits_without_shared_patients(tmp_path):
    spec = BENCHMARKS["synthetic-dr-v1"]
    assert {k: v["n"] for k, v in spec["splits"].items()} == {
        "train": 2000,
        "val": 500,
        "test": 1000,
    }
    assert spec["size"] == 512
    out = write_benchmark("synthetic-dr-v1", tmp_path, size=64, limit=5, workers=1)
    header, rows = read_csv(out / "train.csv")
    assert header == ["id_code", "diagnosis", "patient_id", "eye", "split"]
    assert Counter(r["split"] for r in rows) == {"train": 5, "val": 5, "test": 5}
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "synthetic-dr-v1@64px-limit5" and manifest["size"] == 64
    assert (
        len(manifest["generator_sha256"]) == 64
        and manifest["seeds"]["test"] == spec["splits"]["test"]["seed"]
    )
    again = write_benchmark("synthetic-dr-v1", tmp_path / "again", size=64, limit=5, workers=1)
    assert (again / "train.csv").read_bytes() == (out / "train.csv").read_bytes()


def test_synth_command_reports_where_and_how_many(tmp_path, capsys):
    assert (
        main(["synth", str(tmp_path / "d"), "--n", "4", "--size", "64", "--layout", "eyepacs"]) == 0
    )
    printed = capsys.readouterr().out
    assert str(tmp_path / "d") in printed and "grade 0 No DR" in printed
    assert len(list((tmp_path / "d" / "train").glob("*.jpeg"))) == 4
    assert (
        main(
            [
                "synth",
                str(tmp_path / "b"),
                "--benchmark",
                "synthetic-dr-v1",
                "--size",
                "64",
                "--limit",
                "2",
            ]
        )
        == 0
    )
    assert "synthetic-dr-v1@64px" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "x"), "--n", "2", "--size", "16"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "x")]) == 2


def test_quadrants_are_named_and_cover_the_image():
    sample = generate(2, 3, size=96)
    quadrants = quadrant_map(sample.meta, sample.image.shape[:2])
    assert set(np.unique(quadrants)) == {0, 1, 2, 3} and len(QUADRANTS) == 4
