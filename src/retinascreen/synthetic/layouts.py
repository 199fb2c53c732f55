"""Write synthetic data sets in the five published layouts, and the fixed benchmarks.

Layouts follow docs/design.md "Data-set layouts". Every file is written atomically (temporary
name, then rename); masks go to ``OUT/masks/<id>_<lesion>.png`` (only non-empty ones).
Images of a data set come in pairs of eyes of one patient with correlated grades.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from retinascreen.data.formats import (
    APTOS,
    BENCHMARK_MANIFEST,
    DATASET_FORMATS,
    EYE_COLUMN,
    EYEPACS,
    FOLDERS,
    IDRID,
    KAGGLE_FOLDER_NAMES,
    LAYOUTS,
    MESSIDOR2,
    PATIENT_COLUMN,
    SPLIT_COLUMN,
    SYNTHETIC_MANIFEST,
)
from retinascreen.errors import ConfigError
from retinascreen.synthetic.acquisition import UNGRADABLE_KINDS
from retinascreen.synthetic.generator import (
    APTOS_GRADE_MIX,
    MAX_SIZE,
    MIN_SIZE,
    check_mix,
    draw_grade,
    fellow_eye_grade,
    generate,
    render,
)

PARALLEL_FROM = 48  # images; below this one process is faster than starting workers

BENCHMARKS: dict[str, dict] = {
    "synthetic-dr-v1": {
        "version": 1,
        "size": 512,
        "grade_mix": APTOS_GRADE_MIX,
        "ungradable": 0.0,
        "splits": {
            "train": {"n": 2000, "seed": 1_000_001},
            "val": {"n": 500, "seed": 2_000_002},
            "test": {"n": 1000, "seed": 3_000_003},
        },
    },
}


def generator_sha256() -> str:
    """SHA-256 over the generator's source files: changes whenever the pictures could."""
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- planning
def plan_dataset(
    n: int, *, seed: int = 0, grade_mix: Sequence[float] = APTOS_GRADE_MIX, ungradable: float = 0.0
) -> list[dict]:
    """Grades, eyes, patients and degradations of ``n`` images, without drawing any pixels.

    Images come in pairs (right and left eye of one patient, fellow-eye grades correlated);
    each image is ungradable with probability ``ungradable``, of a uniformly drawn kind.
    """
    if n < 1:
        raise ConfigError(f"the number of images must be at least 1, got {n}")
    if not 0.0 <= ungradable <= 1.0:
        raise ConfigError(f"the ungradable fraction must be between 0 and 1, got {ungradable}")
    try:
        mix = check_mix(grade_mix)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    grade_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xDA7A]))
    ung_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xBAD]))
    plan = []
    for p in range(math.ceil(n / 2)):
        first = draw_grade(grade_rng, mix)
        grades = (first, fellow_eye_grade(grade_rng, first, mix))
        eyes = ("right", "left") if grade_rng.random() < 0.5 else ("left", "right")
        patient = "P" + hashlib.sha1(f"patient:{seed}:{p}".encode()).hexdigest()[:10]
        for k in range(2):
            index = 2 * p + k
            if index >= n:
                break
            bad = ung_rng.random() < ungradable
            kind = UNGRADABLE_KINDS[int(ung_rng.integers(0, len(UNGRADABLE_KINDS)))]
            image_seed = int(
                np.random.SeedSequence([int(seed), index])
                .generate_state(2, np.uint32)
                .astype(np.uint64)
                .dot([1 << 31, 1])
            )
            plan.append(
                {
                    "index": index,
                    "seed": image_seed,
                    "grade": grades[k],
                    "eye": eyes[k],
                    "patient": patient,
                    "patient_number": p + 1,
                    "ungradable": kind if bad else None,
                }
            )
    return plan


def _image_id(layout: str, item: dict, seed: int) -> str:
    if layout == EYEPACS.name:
        return f"{item['patient_number']}_{item['eye']}"
    if layout == MESSIDOR2.name:
        return f"IM{item['index'] + 1:06d}.png"
    if layout == IDRID.name:
        return f"IDRiD_{item['index'] + 1:03d}"
    return hashlib.sha1(f"{seed}:{item['index']}".encode()).hexdigest()[:12]


def _image_path(layout: str, image_id: str, grade: int, folder_names: str) -> Path:
    fmt = DATASET_FORMATS[layout]
    if fmt.image_folder is not None:
        return fmt.image_folder / f"{image_id}{fmt.image_suffix}"
    folder = KAGGLE_FOLDER_NAMES[grade] if folder_names == "kaggle" else str(grade)
    return Path(folder) / f"{image_id}{FOLDERS.image_suffix}"


# ----------------------------------------------------------------------------- writing
def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _encode(rgb: np.ndarray, suffix: str, quality: int = 95) -> bytes:
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
        if suffix in (".jpg", ".jpeg")
        else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    )
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    ok, buf = cv2.imencode(".jpg" if suffix in (".jpg", ".jpeg") else ".png", image, params)
    if not ok:  # pragma: no cover
        raise RuntimeError(f"could not encode {suffix}")
    return buf.tobytes()


def _make_one(task: dict) -> dict:
    """Generate and write one image with its masks (runs in worker processes)."""
    out = Path(task["out"])
    path = out / task["path"]
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    make = render if jpeg else generate  # JPEG layouts compress once, at the drawn quality
    sample = make(
        task["seed"],
        task["grade"],
        size=task["size"],
        ungradable=task["ungradable"],
        eye=task["eye"],
        patient=task["patient"],
    )
    quality = sample.meta["acquisition"]["jpeg_quality"]
    write_atomic(path, _encode(sample.image, path.suffix.lower(), quality))
    masks = []
    for name, mask in sample.masks.items():
        if mask.any():
            write_atomic(
                out / "masks" / f"{task['stem']}_{name}.png",
                _encode(mask.astype(np.uint8) * 255, ".png"),
            )
            masks.append(name)
    return {
        "dme_risk": sample.meta["dme_risk"],
        "masks": masks,
        "height": int(sample.image.shape[0]),
        "width": int(sample.image.shape[1]),
    }


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the processes are the parallelism; OpenCV threads would fight them


def _run_tasks(
    tasks: list[dict], workers: int | None, progress: bool | None, desc: str
) -> list[dict]:
    n = len(tasks)
    if workers is None:
        workers = 2 if n >= PARALLEL_FROM else 1
    disable = not (sys.stderr.isatty() or n >= 200) if progress is None else not progress
    bar = tqdm(total=n, desc=desc, unit="img", file=sys.stderr, disable=disable)
    try:
        if workers <= 1:
            results = []
            for t in tasks:
                results.append(_make_one(t))
                bar.update()
            return results
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_worker_init) as pool:
            results = []
            for r in pool.imap(_make_one, tasks, chunksize=4):
                results.append(r)
                bar.update()
            return results
    finally:
        bar.close()


def _csv_bytes(header: Sequence[str], rows: list[list]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode()


def _check_size(size: int) -> int:
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ConfigError(f"--size must be {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    return int(size)


def _prepare_out(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_dataset(
    out: str | Path,
    n: int,
    *,
    size: int = 512,
    seed: int = 0,
    layout: str = "aptos",
    ungradable: float = 0.0,
    grade_mix: Sequence[float] = APTOS_GRADE_MIX,
    folder_names: str = "kaggle",
    workers: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Write ``n`` synthetic photographs to ``out`` in ``layout``; returns ``out``.

    ``layout`` is one of aptos, eyepacs, messidor2, idrid (IDRiD's training set, as published:
    ``B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv`` and
    ``1. Original Images/a. Training Set/``), folders (``folder_names`` "kaggle"
    -> No_DR..Proliferate_DR, "numeric" -> 0..4). Ungradable images keep their underlying
    grade in every layout except messidor2, where they have ``adjudicated_gradable=0`` and an
    empty grade. Label CSVs carry the design's columns first; aptos, messidor2 and idrid add
    ``patient_id,eye`` (aptos also ``ungradable`` when asked for) so splits can group the two
    eyes of a patient. ``OUT/synthetic.json`` records the parameters and counts.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    if folder_names not in ("kaggle", "numeric"):
        raise ConfigError(f"folder_names must be 'kaggle' or 'numeric', got {folder_names!r}")
    size = _check_size(size)
    plan = plan_dataset(n, seed=seed, grade_mix=grade_mix, ungradable=ungradable)
    out = _prepare_out(out)
    tasks = []
    for item in plan:
        image_id = _image_id(layout, item, seed)
        path = _image_path(layout, image_id, item["grade"], folder_names)
        tasks.append(
            {
                **item,
                "id": image_id,
                "stem": Path(image_id).stem,
                "path": str(path),
                "out": str(out),
                "size": size,
            }
        )
    results = _run_tasks(tasks, workers, progress, f"synth {layout}")
    _write_labels(out, layout, tasks, results, with_ungradable=ungradable > 0)
    manifest = {
        "generator": "retinascreen.synthetic",
        "generator_sha256": generator_sha256(),
        "layout": layout,
        "n": n,
        "size": size,
        "seed": seed,
        "grade_mix": list(map(float, grade_mix)),
        "ungradable_fraction": ungradable,
        "grade_counts": grade_counts(tasks),
        "ungradable_counts": dict(Counter(t["ungradable"] for t in tasks if t["ungradable"])),
        "masks": "masks/<id>_<lesion>.png, only lesions present",
    }
    write_atomic(out / SYNTHETIC_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return out


def grade_counts(tasks: list[dict]) -> dict[str, int]:
    """Images per grade ("0".."4"), all grades listed."""
    counts = Counter(t["grade"] for t in tasks)
    return {str(g): counts.get(g, 0) for g in range(5)}


def _labels_path(out: Path, layout: str) -> Path:
    labels_csv = DATASET_FORMATS[layout].labels_csv
    assert labels_csv is not None, f"the {layout} layout has no label CSV"
    return out / labels_csv


LabelRows = Callable[[list[dict], list[dict], bool], tuple[list[str], list[list[Any]]]]


def _aptos_rows(
    tasks: list[dict], results: list[dict], with_ungradable: bool
) -> tuple[list[str], list[list[Any]]]:
    header = [*APTOS.columns, PATIENT_COLUMN, EYE_COLUMN] + (
        ["ungradable"] if with_ungradable else []
    )
    rows = [
        [t["id"], t["grade"], t["patient"], t["eye"]]
        + ([t["ungradable"] or ""] if with_ungradable else [])
        for t in tasks
    ]
    return header, rows


def _eyepacs_rows(
    tasks: list[dict], results: list[dict], with_ungradable: bool
) -> tuple[list[str], list[list[Any]]]:
    return list(EYEPACS.columns), [[t["id"], t["grade"]] for t in tasks]


def _messidor2_rows(
    tasks: list[dict], results: list[dict], with_ungradable: bool
) -> tuple[list[str], list[list[Any]]]:
    rows: list[list[Any]] = []
    for t, r in zip(tasks, results, strict=True):
        if t["ungradable"]:
            rows.append([t["id"], "", "", 0, t["patient"], t["eye"]])
        else:
            rows.append([t["id"], t["grade"], int(r["dme_risk"] == 2), 1, t["patient"], t["eye"]])
    return [*MESSIDOR2.columns, PATIENT_COLUMN, EYE_COLUMN], rows


def _idrid_rows(
    tasks: list[dict], results: list[dict], with_ungradable: bool
) -> tuple[list[str], list[list[Any]]]:
    rows = [
        [t["id"], t["grade"], r["dme_risk"], t["patient"], t["eye"]]
        for t, r in zip(tasks, results, strict=True)
    ]
    return [*IDRID.columns, PATIENT_COLUMN, EYE_COLUMN], rows


# The label file's writer of every layout ``synth --layout`` offers, beside the layout's reader
# (:data:`retinascreen.data.formats.DATASET_FORMATS`); None: the folder is the label.
LABEL_WRITERS: dict[str, LabelRows | None] = {
    APTOS.name: _aptos_rows,
    EYEPACS.name: _eyepacs_rows,
    MESSIDOR2.name: _messidor2_rows,
    IDRID.name: _idrid_rows,
    FOLDERS.name: None,
}
_missing = sorted(set(LAYOUTS) - set(LABEL_WRITERS))
if _missing:  # a new layout without its writer would write a set with no labels file
    raise ConfigError(f"layout(s) without a label writer: {', '.join(_missing)}")


def _write_labels(
    out: Path, layout: str, tasks: list[dict], results: list[dict], *, with_ungradable: bool
) -> None:
    if layout not in LABEL_WRITERS:
        raise ConfigError(f"no label writer for the {layout!r} layout")
    writer = LABEL_WRITERS[layout]
    if writer is None:
        return  # folders: the folder is the label
    header, rows = writer(tasks, results, with_ungradable)
    write_atomic(_labels_path(out, layout), _csv_bytes(header, rows))


def write_benchmark(
    name: str,
    out: str | Path,
    *,
    size: int | None = None,
    limit: int | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> Path:
    """Write the fixed benchmark ``name`` (see :data:`BENCHMARKS`) to ``out``; returns ``out``.

    APTOS layout with extra columns ``patient_id,eye,split``; each split has its own seed and
    patients, so no patient spans two splits. ``size`` overrides the image size and ``limit``
    caps the images per split; both change the benchmark's name in ``manifest.json`` (e.g.
    ``synthetic-dr-v1@256px``) so results on a variant are never mistaken for the real thing.
    """
    if name not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    spec = BENCHMARKS[name]
    size = _check_size(size if size is not None else spec["size"])
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    variant = (
        name + (f"@{size}px" if size != spec["size"] else "") + (f"-limit{limit}" if limit else "")
    )
    out = _prepare_out(out)
    tasks, counts = [], {}
    for split, s in spec["splits"].items():
        n = min(s["n"], limit) if limit else s["n"]
        plan = plan_dataset(
            n, seed=s["seed"], grade_mix=spec["grade_mix"], ungradable=spec["ungradable"]
        )
        split_tasks = []
        for item in plan:
            image_id = _image_id(APTOS.name, item, s["seed"])
            split_tasks.append(
                {
                    **item,
                    "id": image_id,
                    "stem": image_id,
                    "split": split,
                    "out": str(out),
                    "path": str(_image_path(APTOS.name, image_id, item["grade"], "kaggle")),
                    "size": size,
                }
            )
        counts[split] = {"n": n, "grades": grade_counts(split_tasks)}
        tasks += split_tasks
    _run_tasks(tasks, workers, progress, variant)
    rows = [[t["id"], t["grade"], t["patient"], t["eye"], t["split"]] for t in tasks]
    header = [*APTOS.columns, PATIENT_COLUMN, EYE_COLUMN, SPLIT_COLUMN]
    write_atomic(_labels_path(out, APTOS.name), _csv_bytes(header, rows))
    manifest = {
        "name": variant,
        "benchmark": name,
        "version": spec["version"],
        "layout": APTOS.name,
        "size": size,
        "limit": limit,
        "counts": counts,
        "seeds": {k: v["seed"] for k, v in spec["splits"].items()},
        "grade_mix": list(spec["grade_mix"]),
        "generator": "retinascreen.synthetic",
        "generator_sha256": generator_sha256(),
    }
    write_atomic(out / BENCHMARK_MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
    return out
