"""Reading the five published layouts, reporting problems together, and patient-safe splits."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from retinascreen.data.datasets import (
    FORMATS,
    Record,
    describe,
    load_dataset,
    read_table,
    split_dataset,
)
from retinascreen.data.formats import LAYOUTS
from retinascreen.errors import DatasetError
from tests.helpers.layouts import (
    IDRID_CSV,
    IDRID_IMAGES,
    IDRID_TEST_CSV,
    IDRID_TEST_IMAGES,
    fundus_image,
    write_aptos,
    write_csv,
    write_eyepacs,
    write_folders,
    write_idrid,
    write_messidor2,
)


def test_formats_are_the_five_of_the_spec_with_idrids_two_splits():
    assert FORMATS == (
        "aptos",
        "eyepacs",
        "messidor2",
        "idrid",
        "idrid-test",
        "idrid-all",
        "folders",
    )
    assert LAYOUTS == ("aptos", "eyepacs", "messidor2", "idrid", "folders")  # what synth writes


@pytest.mark.parametrize("point_at_csv", [False, True])
def test_aptos_reads_root_or_csv(tmp_path, point_at_csv):
    root = write_aptos(tmp_path, n=10)
    records = load_dataset(root / "train.csv" if point_at_csv else root, "aptos")
    assert len(records) == 10
    assert [r.grade for r in records] == [i % 5 for i in range(10)]
    assert records[0].path == root / "train_images" / "a000.png"
    assert all(r.path.is_file() for r in records)
    assert records[3].patient == "a003"  # no patient column: each image is its own patient


def test_aptos_keeps_patient_and_eye_columns(tmp_path):
    records = load_dataset(write_aptos(tmp_path, n=6, extra=True), "aptos")
    assert [r.patient for r in records] == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert [r.eye for r in records[:2]] == ["left", "right"]


def test_aptos_upper_case_extension(tmp_path):
    fundus_image(tmp_path / "train_images" / "X1.PNG", 1)
    write_csv(tmp_path / "train.csv", ["id_code", "diagnosis"], [["X1", 3]])
    [record] = load_dataset(tmp_path, "aptos")
    assert record.path.name == "X1.PNG" and record.grade == 3


def test_eyepacs_patient_is_name_before_eye(tmp_path):
    records = load_dataset(write_eyepacs(tmp_path, n_patients=3), "eyepacs")
    assert [(r.patient, r.eye) for r in records[:2]] == [("10", "left"), ("10", "right")]
    assert records[0].path == tmp_path / "train" / "10_left.jpeg"
    assert len({r.patient for r in records}) == 3


def test_messidor2_excludes_ungradable_rows_and_reports_them(tmp_path, caplog):
    root = write_messidor2(tmp_path, n=8, ungradable=2)
    with caplog.at_level(logging.INFO, logger="retinascreen.data.datasets"):
        table = read_table(root, "messidor2")
    assert len(table.records) == 8
    assert table.excluded == {"ungradable": 2}
    assert not any("IMU" in r.path.name for r in table.records)
    assert "2 ungradable" in caplog.text
    assert "excluded: 2 ungradable" in describe(table.records, table.excluded)
    # image_id carries the extension, .JPG and .png mixed, patient = stem
    assert {r.path.suffix for r in table.records} == {".JPG", ".png"}
    assert table.records[1].patient == "20051020_00001_0100_PP"


def test_idrid_fixture_is_written_as_idrid_publishes_it(tmp_path):
    root = write_idrid(tmp_path, n=2, n_test=1)
    train = (root / IDRID_CSV).read_text().splitlines()
    assert train[0] == "Image name,Retinopathy grade,Risk of macular edema ,,"
    assert train[1] == "IDRiD_001,0,0,," and train[-1] == ",,,,"
    test = (root / IDRID_TEST_CSV).read_text().splitlines()
    assert test == ["Image name,Retinopathy grade,Risk of macular edema ", "IDRiD_001,4,2"]


@pytest.mark.parametrize("where", ["root", "grading folder", "csv"])
def test_idrid_reads_the_published_training_set_and_its_edema_risk(tmp_path, where):
    root = write_idrid(tmp_path, n=6)
    data = {"root": root, "grading folder": root / "B. Disease Grading", "csv": root / IDRID_CSV}
    table = read_table(data[where], "idrid")
    records = table.records
    assert table.source == root / IDRID_CSV  # the published name, not a search
    assert len(records) == 6  # the blank trailing row is skipped
    assert [r.grade for r in records] == [0, 1, 2, 3, 4, 0]
    assert [r.macular_edema for r in records] == [0, 1, 2, 0, 1, 2]
    # IDRiD's test set reuses the names: the training CSV must take the training images
    assert all(r.path.parent == root / IDRID_IMAGES for r in records)
    assert records[0].patient == "IDRiD_001" and all(r.split is None for r in records)


@pytest.mark.parametrize("point_at_csv", [False, True])
def test_idrid_test_reads_the_published_testing_set(tmp_path, point_at_csv):
    root = write_idrid(tmp_path, n=6, n_test=3)
    records = load_dataset(root / IDRID_TEST_CSV if point_at_csv else root, "idrid-test")
    assert [r.path for r in records] == [
        root / IDRID_TEST_IMAGES / f"IDRiD_{i:03d}.jpg" for i in (1, 2, 3)
    ]
    assert [r.grade for r in records] == [4, 3, 2]
    assert [r.macular_edema for r in records] == [2, 1, 0]
    assert all(r.split == "test" for r in records)
    # another photo than the training set's IDRiD_001, so another patient
    assert records[0].patient == "test/IDRiD_001"
    splits = split_dataset(records)
    assert splits["test"] == records and not splits["train"] and not splits["val"]


def test_idrid_all_keeps_the_published_test_set_as_the_test_split(tmp_path):
    root = write_idrid(tmp_path, n=20, n_test=5)
    table = read_table(root, "idrid-all")
    assert len(table.records) == 25 and table.source == root
    splits = split_dataset(table.records, val=0.2, test=0.2, seed=0)
    assert {r.path.parent for r in splits["test"]} == {root / IDRID_TEST_IMAGES}
    assert len(splits["test"]) == 5
    train_val = splits["train"] + splits["val"]
    assert {r.path.parent for r in train_val} == {root / IDRID_IMAGES} and len(train_val) == 20
    assert splits["val"] and len(splits["train"]) > len(splits["val"])
    assert {r.macular_edema for r in table.records} == {0, 1, 2}


def test_idrid_wrong_split_or_missing_file_says_what_to_do(tmp_path):
    root = write_idrid(tmp_path, n=3)
    with pytest.raises(DatasetError, match="IDRiD's testing labels: use --format idrid-test"):
        load_dataset(root / IDRID_TEST_CSV, "idrid")
    with pytest.raises(DatasetError, match="IDRiD's training labels: use --format idrid$"):
        load_dataset(root / IDRID_CSV, "idrid-test")
    with pytest.raises(DatasetError, match="reads both IDRiD label files"):
        load_dataset(root / IDRID_CSV, "idrid-all")
    (root / IDRID_TEST_CSV).unlink()
    with pytest.raises(DatasetError, match="b. IDRiD_Disease Grading_Testing Labels.csv"):
        load_dataset(root, "idrid-all")
    assert len(load_dataset(root, "idrid")) == 3


def test_idrid_unknown_edema_risk_is_reported_with_the_grades(tmp_path):
    root = write_idrid(tmp_path, n=3, n_test=0)
    header = ["Image name", "Retinopathy grade", "Risk of macular edema ", "", ""]
    rows = [["IDRiD_001", 1, 5, "", ""], ["IDRiD_002", 9, 0, "", ""], ["IDRiD_003", 2, "", "", ""]]
    write_csv(root / IDRID_CSV, header, rows)
    with pytest.raises(DatasetError) as err:
        load_dataset(root, "idrid")
    assert "1 row has an unknown label" in str(err.value) and "IDRiD_002" in str(err.value)
    assert "unknown macular-oedema risk (must be 0..2 or empty): IDRiD_001" in str(err.value)


@pytest.mark.parametrize("named", [True, False])
def test_folders_by_grade_name_or_number(tmp_path, named):
    records = load_dataset(write_folders(tmp_path, per_grade=2, named=named), "folders")
    assert Counter(r.grade for r in records) == {g: 2 for g in range(5)}
    assert records[0].patient == records[0].path.stem


def test_folders_group_both_eyes_named_l_and_r(tmp_path):
    # srahim-dr's names: Patient001_L.jpg / Patient001_R.jpg, the two eyes in different grades.
    fundus_image(tmp_path / "0" / "Patient001_L.jpg", 1)
    fundus_image(tmp_path / "2" / "Patient001_R.jpg", 2)
    fundus_image(tmp_path / "0" / "img_l.jpg", 3)  # a lower-case letter is part of the name
    records = sorted(load_dataset(tmp_path, "folders"), key=lambda r: r.path.name)
    assert [(r.path.name, r.patient, r.eye) for r in records] == [
        ("Patient001_L.jpg", "Patient001", "left"),
        ("Patient001_R.jpg", "Patient001", "right"),
        ("img_l.jpg", "img_l", None),
    ]


def test_folders_nested_like_kaggle_gaussian_set(tmp_path):
    write_folders(tmp_path / "gaussian_filtered_images" / "gaussian_filtered_images")
    assert len(load_dataset(tmp_path, "folders")) == 10


def test_missing_files_and_unknown_labels_reported_together(tmp_path):
    root = write_aptos(tmp_path, n=12)
    for code in ("a001", "a004", "a007"):
        (root / "train_images" / f"{code}.png").unlink()
    rows = [[f"a{i:03d}", i % 5] for i in range(12)]
    rows[2][1], rows[5][1] = "7", "moderate"
    write_csv(root / "train.csv", ["id_code", "diagnosis"], rows)
    with pytest.raises(DatasetError) as err:
        load_dataset(root, "aptos")
    msg = str(err.value)
    assert "3 of 12 images listed in train.csv are missing: a001.png, a004.png, a007.png" in msg
    assert "2 rows have unknown labels" in msg
    assert "a002" in msg and "'7'" in msg and "'moderate'" in msg


def test_error_lists_only_first_few_names(tmp_path):
    write_csv(
        tmp_path / "trainLabels.csv", ["image", "level"], [[f"{i}_left", 0] for i in range(40)]
    )
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match=r"40 of 40 images .* \(35 more\)"):
        load_dataset(tmp_path, "eyepacs")


def test_unknown_grade_folder_is_reported(tmp_path):
    write_folders(tmp_path, per_grade=1)
    fundus_image(tmp_path / "Unsure" / "u1.png", 1)
    with pytest.raises(DatasetError, match=r"1 row has an unknown label .*Unsure/u1.png"):
        load_dataset(tmp_path, "folders")


@pytest.mark.parametrize(
    ("setup", "fmt", "message"),
    [
        (
            lambda p: write_csv(p / "train.csv", ["id_code", "diagnosis"], []),
            "aptos",
            "no images found",
        ),
        (lambda p: p.mkdir(exist_ok=True), "aptos", "no train.csv"),
        (
            lambda p: write_csv(p / "train.csv", ["id", "grade"], [["a", 1]]),
            "aptos",
            "no column 'id_code'",
        ),
        (lambda p: p.mkdir(exist_ok=True), "folders", "no grade folders"),
        (lambda p: p.mkdir(exist_ok=True), "idrid", "no IDRiD grading CSV"),
        (lambda p: p.mkdir(exist_ok=True), "kaggle", "unknown data-set format"),
    ],
)
def test_clear_errors_for_empty_or_wrong_layout(tmp_path, setup, fmt, message):
    setup(tmp_path)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path, fmt)


def test_messidor2_all_ungradable_is_an_empty_data_set(tmp_path):
    write_messidor2(tmp_path, n=0, ungradable=3)
    with pytest.raises(DatasetError, match="no images found.*3 ungradable excluded"):
        load_dataset(tmp_path, "messidor2")


def test_describe_counts_grades(tmp_path):
    text = describe(load_dataset(write_folders(tmp_path, per_grade=2), "folders"))
    assert text.startswith("10 images, 10 patients")
    assert "grade 4 Proliferative DR" in text and "2 ( 20.0%)" in text


# --------------------------------------------------------------------------- splits


def _records(n_patients: int, seed: int) -> list[Record]:
    """Patients with one or two eyes; grades skewed like APTOS, some rare."""
    import random

    rng = random.Random(seed)
    out = []
    for p in range(n_patients):
        grade = rng.choices(range(5), weights=(49, 10, 27, 5, 8))[0]
        for eye in ("left", "right")[: rng.choice((1, 2))]:
            g = grade if rng.random() < 0.8 else rng.randrange(5)
            out.append(Record(Path(f"/x/{p}_{eye}.png"), g, str(p), eye))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_split_groups_patients_and_stratifies(seed):
    records = _records(150, seed)
    splits = split_dataset(records, val=0.15, test=0.15, seed=seed)
    assert sorted(map(id, sum(splits.values(), []))) == sorted(map(id, records))
    patients = {s: {r.patient for r in rs} for s, rs in splits.items()}
    assert not patients["train"] & patients["val"]
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    for grade in range(5):
        with_grade = {r.patient for r in records if r.grade == grade}
        if len(with_grade) >= 3:
            assert all(any(r.grade == grade for r in rs) for rs in splits.values()), grade
    n = len(records)
    assert abs(len(splits["val"]) - 0.15 * n) <= 0.06 * n
    assert abs(len(splits["test"]) - 0.15 * n) <= 0.06 * n


def test_split_is_deterministic_and_depends_on_seed():
    records = _records(80, 1)
    first = split_dataset(records, seed=3)
    assert first == split_dataset(list(records), seed=3)
    assert first != split_dataset(records, seed=4)


def test_rare_grade_with_three_patients_reaches_every_split():
    records = [Record(Path(f"/c/{i}.png"), 0, f"c{i}") for i in range(40)]
    records += [Record(Path(f"/r/{i}.png"), 4, f"r{i}") for i in range(3)]
    splits = split_dataset(records, seed=0)
    assert [sum(r.grade == 4 for r in splits[s]) for s in ("train", "val", "test")] == [1, 1, 1]


def test_split_honours_pre_assigned_splits():
    records = [
        Record(Path(f"/a/{i}.png"), i % 5, f"p{i}", split=s)
        for i, s in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2)
    ]
    splits = split_dataset(records, val=0.3, test=0.3, seed=0)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    assert all(r.split == s for s, rs in splits.items() for r in rs)


def test_unassigned_images_follow_their_patients_pre_assigned_split():
    fixed = Record(Path("/a/1_left.png"), 2, "1", "left", split="test")
    loose = Record(Path("/a/1_right.png"), 2, "1", "right")
    others = [Record(Path(f"/b/{i}.png"), i % 5, f"b{i}") for i in range(30)]
    splits = split_dataset([fixed, loose, *others], seed=0)
    assert loose in splits["test"]


def test_split_column_read_from_csv_and_honoured(tmp_path):
    rows = [[f"s{i}", i % 5, ["train", "val", "test"][i % 3]] for i in range(9)]
    for i in range(9):
        fundus_image(tmp_path / "train_images" / f"s{i}.png", i)
    write_csv(tmp_path / "train.csv", ["id_code", "diagnosis", "split"], rows)
    splits = split_dataset(load_dataset(tmp_path, "aptos"))
    assert [r.path.stem for r in splits["val"]] == ["s1", "s4", "s7"]


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError):
        split_dataset([], val=0.6, test=0.5)


# --------------------------------------------------------------------------- synthetic round trips


@pytest.mark.parametrize("layout", ["aptos", "eyepacs", "messidor2", "idrid", "folders"])
def test_synthetic_layouts_read_back(tmp_path, layout):
    import json

    from retinascreen.synthetic import write_dataset

    root = write_dataset(tmp_path / layout, 10, size=64, seed=5, layout=layout, workers=1)
    records = load_dataset(root, layout)
    manifest = json.loads((root / "synthetic.json").read_text())
    assert len(records) == 10
    assert {str(g): n for g, n in Counter(r.grade for r in records).items()} == {
        g: n for g, n in manifest["grade_counts"].items() if n
    }
    assert all(r.path.is_file() for r in records)
    if layout != "folders":  # the two eyes of a synthetic patient share a patient id
        assert len({r.patient for r in records}) == 5
        assert {r.eye for r in records} == {"left", "right"}
        splits = split_dataset(records, seed=0)
        by_split = [{r.patient for r in rs} for rs in splits.values()]
        assert sum(len(p) for p in by_split) == 5


def test_synthetic_messidor2_ungradable_rows_excluded(tmp_path):
    from retinascreen.synthetic import write_dataset

    root = write_dataset(
        tmp_path, 12, size=64, seed=2, layout="messidor2", ungradable=0.5, workers=1
    )
    rows = (root / "messidor_data.csv").read_text().splitlines()[1:]
    n_bad = sum(row.split(",")[3] == "0" for row in rows)
    assert n_bad > 0
    table = read_table(root, "messidor2")
    assert len(table.records) == 12 - n_bad and table.excluded == {"ungradable": n_bad}


def test_synthetic_benchmark_splits_are_honoured(tmp_path):
    from retinascreen.synthetic import write_benchmark

    root = write_benchmark("synthetic-dr-v1", tmp_path, size=64, limit=4, workers=1)
    records = load_dataset(root, "aptos")
    splits = split_dataset(records, seed=9)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [4, 4, 4]
    patients = [{r.patient for r in rs} for rs in splits.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
