"""Read the published DR data-set layouts into one table of :class:`Record` and split it.

The layouts defined in :mod:`retinascreen.data.formats` (SPEC.md "Data set formats",
docs/design.md "Data-set layouts"): ``aptos``, ``eyepacs``, ``messidor2``, ``idrid`` (IDRiD's
training set; ``idrid-test`` its testing set, ``idrid-all`` both) and ``folders``. Every problem found while reading (missing files, unknown labels) is gathered and
raised as one :class:`DatasetError` before any training starts, with counts and the first few
names.
"""

from __future__ import annotations

import csv
import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from retinascreen.data.folders import parse_eye, stem_patient_and_eye
from retinascreen.data.formats import (
    APTOS,
    EYE_COLUMN,
    EYEPACS,
    FOLDERS,
    FORMATS,
    IDRID,
    IDRID_ALL,
    IDRID_ROOT,
    IDRID_TEST,
    KAGGLE_FOLDER_NAMES,
    MESSIDOR2,
    PATIENT_COLUMN,
    SPLIT_COLUMN,
    DatasetFormat,
)
from retinascreen.data.images import SUPPORTED_SUFFIXES
from retinascreen.errors import DatasetError
from retinascreen.grading import GRADES, LABELS

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
ALL_IMAGES = "all"  # not a split: every image of the data set (an external test set)
EVALUATION_SPLITS: tuple[str, ...] = (*SPLITS, ALL_IMAGES)
FOLDER_GRADE_NAMES: dict[str, int] = {
    **{name.lower(): grade for grade, name in enumerate(KAGGLE_FOLDER_NAMES)},
    "proliferative_dr": 4,
}
_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
_SHOW = 5  # how many names an error message lists


@dataclass(frozen=True)
class Record:
    """One labelled photograph: file, ICDR grade, patient id, eye and optional fixed split.

    ``macular_edema`` is the data set's macular-oedema column where it has one (IDRiD's risk
    0..2, Messidor-2's adjudicated DME 0/1), else None.
    """

    path: Path
    grade: int
    patient: str
    eye: str | None = None
    split: str | None = None
    macular_edema: int | None = None


@dataclass
class DatasetTable:
    """The records of a data set plus what was left out on purpose (e.g. ungradable rows)."""

    records: list[Record]
    source: Path
    excluded: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _norm_header(name: str) -> str:
    return name.replace("\ufeff", "").strip().lower()


def _read_csv(path: Path) -> tuple[list[dict[str, str]], list[str]]:
    """Rows keyed by normalised header (BOM and spaces stripped, lower case) and the raw headers."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise DatasetError(f"{path} is empty (expected a CSV header)") from None
            keys = [_norm_header(h) for h in header]
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue  # blank lines (IDRiD's CSVs end with some)
                rows.append({k: v.strip() for k, v in zip(keys, values, strict=False) if k})
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not a UTF-8 text CSV file ({exc.reason})") from None
    return rows, [h.replace("\ufeff", "").strip() for h in header]


def _require_columns(path: Path, headers: list[str], *columns: str) -> None:
    have = {_norm_header(h) for h in headers}
    missing = [c for c in columns if c not in have]
    if missing:
        raise DatasetError(
            f"{path.name} has no column {', '.join(repr(c) for c in missing)} "
            f"(columns found: {', '.join(headers) or 'none'})"
        )


def _parse_grade(value: str | None) -> int | None:
    """The ICDR grade in ``value`` ("2", " 2 ", "2.0"), or None when it is not one."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number) or number != int(number) or int(number) not in GRADES:
        return None
    return int(number)


def _parse_edema(value: str | None) -> int | None:
    """The macular-oedema risk in ``value`` (0..2), -1 when it is not one, None when empty."""
    if value is None or not value.strip():
        return None
    grade = _parse_grade(value)
    return grade if grade is not None and grade <= 2 else -1


def _parse_split(value: str | None, where: str) -> str | None:
    if value is None or not value.strip():
        return None
    split = _SPLIT_ALIASES.get(value.strip().lower())
    if split is None:
        raise DatasetError(f"{where}: unknown split {value!r} (expected train, val or test)")
    return split


class _FileIndex:
    """Case-insensitive lookup of image files in one or more folders, listed once."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        for folder in folders:
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if f.suffix.lower() in SUPPORTED_SUFFIXES and f.is_file():
                    self.by_name[f.name.lower()].append(f)
                    self.by_stem[f.stem.lower()].append(f)

    def find(self, name: str, suffixes: Sequence[str] = ()) -> Path | None:
        """The file called ``name`` (any case), else ``name`` + one of ``suffixes``, else any
        image whose stem is ``name``; the first folder listed wins."""
        candidates = list(self.by_name.get(name.lower(), []))
        if not candidates:
            for suffix in suffixes:
                candidates += self.by_name.get((name + suffix).lower(), [])
        if not candidates:
            candidates = list(self.by_stem.get(name.lower(), []))
            if not candidates and Path(name).suffix:
                candidates = list(self.by_stem.get(Path(name).stem.lower(), []))
        return candidates[0] if candidates else None


def _resolve_csv(path: Path, fmt: DatasetFormat) -> Path:
    """``path`` is the CSV itself or the data-set root holding one of ``fmt``'s CSV names."""
    if path.is_file():
        return path
    for name in fmt.csv_names:
        candidate = path / name
        if candidate.is_file():
            return candidate
    raise DatasetError(
        f"no {' or '.join(fmt.csv_names)} in {path} (the {fmt.name} layout is {fmt.layout}; "
        "--data may be the data-set folder or the CSV file)"
    )


def _key(column: str | None) -> str:
    """The normalised header of a format's column (see :func:`_read_csv`)."""
    assert column is not None, "a CSV layout names its id and grade columns"
    return _norm_header(column)


class _Problems:
    """Collects missing files and unknown labels to report them together."""

    def __init__(self, listing: str, n_rows: int) -> None:
        self.listing = listing
        self.n_rows = n_rows
        self.missing: list[str] = []
        self.unknown: list[str] = []
        self.unknown_edema: list[str] = []

    def raise_if_any(self) -> None:
        parts = []
        if self.missing:
            parts.append(
                f"{len(self.missing)} of {self.n_rows} images listed in {self.listing} are "
                f"missing: {_first(self.missing)}"
            )
        if self.unknown:
            parts.append(
                f"{_rows(len(self.unknown), 'an unknown label', 'unknown labels')} "
                f"(grades must be 0..4): {_first(self.unknown)}"
            )
        if self.unknown_edema:
            risk = "an unknown macular-oedema risk"
            parts.append(
                f"{_rows(len(self.unknown_edema), risk, risk)} (must be 0..2 or empty): "
                f"{_first(self.unknown_edema)}"
            )
        if parts:
            raise DatasetError("; ".join(parts))


def _rows(n: int, one: str, many: str) -> str:
    """``1 row has <one>`` / ``3 rows have <many>``."""
    return f"{n} row has {one}" if n == 1 else f"{n} rows have {many}"


def _first(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f", ... ({len(names) - _SHOW} more)" if len(names) > _SHOW else "")


def _records_from_rows(
    csv_path: Path,
    rows: list[dict[str, str]],
    index: _FileIndex,
    fmt: DatasetFormat,
) -> list[Record]:
    """The records of a label CSV's rows; missing files and unknown labels raised together.

    Patient and eye come from ``patient_id``/``eye`` columns when present, else from the image
    name (``<patient>_left``); a ``split`` column (else the format's published split)
    pre-assigns the split. The images of a published split other than training are patients of
    their own (``test/IDRiD_001``): IDRiD reuses the training set's names in its testing set.
    """
    name_column, grade_column = _key(fmt.id_column), _key(fmt.grade_column)
    edema_column = _norm_header(fmt.dme_column) if fmt.dme_column else None
    problems = _Problems(csv_path.name, len(rows))
    records = []
    for i, row in enumerate(rows, start=2):
        name = row.get(name_column, "")
        if not name:
            continue
        grade = _parse_grade(row.get(grade_column))
        edema = _parse_edema(row.get(edema_column)) if edema_column else None
        file = index.find(name, fmt.read_suffixes)
        if file is None:
            problems.missing.append(f"{name}{fmt.image_suffix}")
        if grade is None:
            problems.unknown.append(f"{name} (line {i}: {row.get(grade_column, '')!r})")
        if edema == -1:
            problems.unknown_edema.append(f"{name} (line {i}: {row.get(edema_column or '')!r})")
        if file is None or grade is None or edema == -1:
            continue
        patient, eye = stem_patient_and_eye(Path(name).stem)
        if fmt.split:
            patient = f"{fmt.split}/{patient}"
        records.append(
            Record(
                path=file,
                grade=grade,
                patient=row.get(PATIENT_COLUMN) or patient,
                eye=parse_eye(row.get(EYE_COLUMN)) or eye,
                split=_parse_split(row.get(SPLIT_COLUMN), f"{csv_path.name} line {i}") or fmt.split,
                macular_edema=edema,
            )
        )
    problems.raise_if_any()
    return records


# --------------------------------------------------------------------------- readers


def _read_labels(csv_path: Path, fmt: DatasetFormat) -> list[dict[str, str]]:
    """The rows of ``fmt``'s label CSV, which must have its id and grade columns."""
    rows, headers = _read_csv(csv_path)
    _require_columns(csv_path, headers, _key(fmt.id_column), _key(fmt.grade_column))
    return rows


def _image_folder(fmt: DatasetFormat) -> Path:
    assert fmt.image_folder is not None, f"the {fmt.name} layout names its image folder"
    return fmt.image_folder


def _index_beside(csv_path: Path, *folders: str | Path) -> _FileIndex:
    """The images in ``folders`` (relative to the CSV's folder, earlier ones win), then beside it."""
    root = csv_path.parent
    return _FileIndex(dict.fromkeys([*(root / f for f in folders), root]))  # dedupe, keep order


def _read_aptos(path: Path) -> DatasetTable:
    csv_path = _resolve_csv(path, APTOS)
    rows = _read_labels(csv_path, APTOS)
    # A CSV other than train.csv (test.csv) has its images in <stem>_images.
    index = _index_beside(csv_path, f"{csv_path.stem}_images", _image_folder(APTOS))
    return DatasetTable(_records_from_rows(csv_path, rows, index, APTOS), csv_path)


def _read_eyepacs(path: Path) -> DatasetTable:
    csv_path = _resolve_csv(path, EYEPACS)
    rows = _read_labels(csv_path, EYEPACS)
    index = _index_beside(csv_path, _image_folder(EYEPACS), csv_path.stem.replace("Labels", ""))
    return DatasetTable(_records_from_rows(csv_path, rows, index, EYEPACS), csv_path)


def _read_messidor2(path: Path) -> DatasetTable:
    csv_path = _resolve_csv(path, MESSIDOR2)
    rows = _read_labels(csv_path, MESSIDOR2)
    index = _index_beside(csv_path, _image_folder(MESSIDOR2), "images")
    gradable = _key(MESSIDOR2.gradable_column)
    gradable_rows = [
        row for row in rows if not row.get(gradable) or _parse_grade(row[gradable]) != 0
    ]
    ungradable = len(rows) - len(gradable_rows)
    records = _records_from_rows(csv_path, gradable_rows, index, MESSIDOR2)
    excluded = {"ungradable": ungradable} if ungradable else {}
    if ungradable:
        log.info("%s: excluded %d ungradable rows (%s=0)", csv_path.name, ungradable, gradable)
    return DatasetTable(records, csv_path, excluded)


def _idrid_csv(path: Path, fmt: DatasetFormat) -> tuple[Path, Path]:
    """The label CSV of IDRiD split ``fmt`` and the ``B. Disease Grading`` folder of its images.

    ``path`` is the folder holding ``B. Disease Grading``, that folder itself, or the CSV.
    """
    assert fmt.labels_csv is not None and fmt.image_folder is not None
    if path.is_file():
        grading = next(
            (p for p in path.parents if p.name.lower() == IDRID_ROOT.name.lower()),
            path.parent.parent if path.parent.name.lower().endswith("groundtruths") else None,
        )
        testing = fmt.split == "test"
        other, other_set = (IDRID, "training") if testing else (IDRID_TEST, "testing")
        name = path.name.lower()
        if other_set[:4] in name and ("test" if testing else "train") not in name:
            raise DatasetError(
                f"{path.name} looks like IDRiD's {other_set} labels: use --format {other.name}"
            )
        return path, grading if grading is not None else path.parent
    root = path if path.name.lower() == IDRID_ROOT.name.lower() else path / IDRID_ROOT
    csv_path = root / fmt.labels_csv.relative_to(IDRID_ROOT)
    if not csv_path.is_file():
        raise DatasetError(
            f"no IDRiD grading CSV in {path} (the {fmt.name} layout is {fmt.layout}; --data "
            f"may be the folder holding '{IDRID_ROOT}', that folder, or the CSV file)"
        )
    return csv_path, root


def _read_idrid_split(path: Path, fmt: DatasetFormat) -> DatasetTable:
    """One published IDRiD split: its label CSV and its images folder (else beside the CSV)."""
    csv_path, grading = _idrid_csv(path, fmt)
    rows = _read_labels(csv_path, fmt)
    assert fmt.image_folder is not None
    images = grading / fmt.image_folder.relative_to(IDRID_ROOT)
    index = _FileIndex(dict.fromkeys([images, csv_path.parent]))
    return DatasetTable(_records_from_rows(csv_path, rows, index, fmt), csv_path)


def _read_idrid(path: Path) -> DatasetTable:
    return _read_idrid_split(path, IDRID)


def _read_idrid_test(path: Path) -> DatasetTable:
    return _read_idrid_split(path, IDRID_TEST)


def _read_idrid_all(path: Path) -> DatasetTable:
    if path.is_file():
        raise DatasetError(
            f"--format {IDRID_ALL.name} reads both IDRiD label files: give --data the folder "
            f"holding '{IDRID_ROOT}' instead of {path.name}"
        )
    train, test = _read_idrid(path), _read_idrid_test(path)
    return DatasetTable(train.records + test.records, path)


def _folder_grade(name: str) -> int | None:
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key in FOLDER_GRADE_NAMES:
        return FOLDER_GRADE_NAMES[key]
    return _parse_grade(key) if key.isdigit() else None


def _read_folders(path: Path) -> DatasetTable:
    if not path.is_dir():
        raise DatasetError(
            f"{path} is not a folder (the folders layout is one sub-folder per grade)"
        )
    root = path
    # Kaggle's Gaussian-filtered set nests the grade folders one or two levels down.
    for _ in range(2):
        subdirs = [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]
        if any(_folder_grade(d.name) is not None for d in subdirs) or len(subdirs) != 1:
            break
        root = subdirs[0]
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    graded = [(d, _folder_grade(d.name)) for d in subdirs]
    if not any(g is not None for _, g in graded):
        raise DatasetError(
            f"no grade folders in {path} (expected sub-folders 0..4 or "
            f"{', '.join(KAGGLE_FOLDER_NAMES)})"
        )
    problems = _Problems(str(root), 0)
    records = []
    for folder, grade in graded:
        files = [f for f in sorted(folder.rglob("*")) if f.suffix.lower() in SUPPORTED_SUFFIXES]
        if grade is None:
            if files and folder.name.lower() != "masks":
                problems.unknown += [f"{folder.name}/{f.name}" for f in files]
            continue
        for f in files:
            patient, eye = stem_patient_and_eye(f.stem)
            records.append(Record(f, grade, patient, eye))
    problems.raise_if_any()
    return DatasetTable(records, root)


_READERS: dict[str, Callable[[Path], DatasetTable]] = {
    APTOS.name: _read_aptos,
    EYEPACS.name: _read_eyepacs,
    MESSIDOR2.name: _read_messidor2,
    IDRID.name: _read_idrid,
    IDRID_TEST.name: _read_idrid_test,
    IDRID_ALL.name: _read_idrid_all,
    FOLDERS.name: _read_folders,
}


# --------------------------------------------------------------------------- public API


def read_table(path: str | Path, fmt: str) -> DatasetTable:
    """Read a data set of format ``fmt`` at ``path`` (its folder or, for CSV layouts, the CSV).

    Raises :class:`DatasetError` listing every missing file and unknown label at once, or when
    the data set is empty.
    """
    if fmt not in _READERS:
        raise DatasetError(f"unknown data-set format {fmt!r} (choose from {', '.join(FORMATS)})")
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path} does not exist")
    table = _READERS[fmt](path)
    if not table.records:
        excluded = "".join(f"; {n} {why} excluded" for why, n in table.excluded.items())
        raise DatasetError(f"no images found in {path} for the {fmt} layout{excluded}")
    return table


def load_dataset(path: str | Path, fmt: str) -> list[Record]:
    """The records of the data set at ``path`` in layout ``fmt`` (see :func:`read_table`)."""
    return read_table(path, fmt).records


def describe(records: Sequence[Record], excluded: dict[str, int] | None = None) -> str:
    """A short human summary: image and patient counts, then images per grade (and split)."""
    counts = Counter(r.grade for r in records)
    n = len(records)
    lines = [f"{n} images, {len({r.patient for r in records})} patients"]
    for g in GRADES:
        share = 100.0 * counts[g] / n if n else 0.0
        lines.append(f"  grade {g} {LABELS[g]:<17} {counts[g]:>7} ({share:5.1f}%)")
    splits = Counter(r.split for r in records if r.split)
    if splits:
        lines.append("  splits: " + ", ".join(f"{s} {splits[s]}" for s in SPLITS if s in splits))
    for why, count in (excluded or {}).items():
        lines.append(f"  excluded: {count} {why}")
    return "\n".join(lines)


def split_dataset(
    records: Sequence[Record], *, val: float = 0.15, test: float = 0.15, seed: int = 0
) -> dict[str, list[Record]]:
    """Split into train/val/test, stratified by grade and grouped by patient; deterministic.

    Records with a pre-assigned ``split`` stay there (and so do the other images of their
    patient). When the data set names its test images (IDRiD's published testing set, a
    ``split`` column) the test split is those alone, and the rest is shared between train and
    val. The rest are assigned patient by patient, rarest grades first, each to the split that is
    furthest below its share of that grade, so every split gets every grade that has at least
    one patient per split.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ValueError(f"val={val} and test={test} must be fractions with val + test < 1")
    ratios = {"train": 1.0 - val - test, "val": val, "test": test}
    out: dict[str, list[Record]] = {s: [] for s in SPLITS}

    fixed_by_patient: dict[str, str] = {}
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r.split is not None:
            if r.split not in out:
                raise ValueError(f"record {r.path} has unknown split {r.split!r}")
            out[r.split].append(r)
            fixed_by_patient.setdefault(r.patient, r.split)
        else:
            groups[r.patient].append(r)
    for patient in [p for p in groups if p in fixed_by_patient]:
        out[fixed_by_patient[patient]] += groups.pop(patient)
    if not groups:
        return out

    totals = Counter(r.grade for rs in groups.values() for r in rs)
    patients_with = Counter(g for rs in groups.values() for g in {r.grade for r in rs})
    test_given = bool(out["test"])
    active = [s for s in SPLITS if ratios[s] > 0 and not (s == "test" and test_given)]
    target = {
        (s, g): max(ratios[s] * totals[g], 1.0 if patients_with[g] >= len(active) else 0.0)
        for s in active
        for g in totals
    }
    have: Counter[tuple[str, int]] = Counter()

    names = sorted(groups)
    random.Random(seed).shuffle(names)
    # Rarest grade first, then bigger patients first; the shuffle breaks ties by seed.
    names.sort(key=lambda p: (min(totals[r.grade] for r in groups[p]), -len(groups[p])))
    for patient in names:
        grades = Counter(r.grade for r in groups[patient])

        def need(s: str, grades: Counter[int] = grades) -> tuple[float, float]:
            rel = sum(
                c * (target[s, g] - have[s, g]) / target[s, g] if target[s, g] else -c
                for g, c in grades.items()
            )
            return rel, ratios[s]

        best = max(active, key=need)
        out[best] += groups[patient]
        for g, c in grades.items():
            have[best, g] += c
    return out
