"""Batch screening of a folder of fundus photographs into a CSV, locally or on a Ray cluster.

One row per image, sorted by path (relative to the folder)::

    path, patient, eye, grade, label, p0..p4, referable, referable_probability,
    gradable, quality_score, quality_reasons, error

and a patient summary next to it (``results.patients.csv``): a patient is referable when any
gradable eye is, and ungradable when no eye is gradable. A bad file gets its ``error`` in its row
and the run goes on. Rows are appended and flushed + fsynced batch by batch, so after a crash
``resume=True`` drops a trailing half-written line and goes on with the images not yet done;
at the end the CSV is rewritten (temp file + rename) sorted by path. Every cell goes through
:mod:`retinascreen.data.csvcells`, so a file named ``=HYPERLINK(...)`` is text in a spreadsheet.

Engines: ``local`` (one Predictor in this process) or ``ray`` (Ray Data: ``map_batches`` over an
actor pool, one Predictor per actor). ``ray.init()`` connects to ``RAY_ADDRESS`` when it is set
(or to ``ray_address``), e.g. ``RAY_ADDRESS=ray://head-node:10001 retinascreen screen ...
--engine ray`` for a remote cluster; the folder and the model must then be readable at the same
paths on every worker (a shared file system). Without an address a local Ray starts.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retinascreen.data.csvcells import SafeDictWriter, plain_cell, read_plain_rows
from retinascreen.data.folders import find_images, patient_and_eye
from retinascreen.data.images import SUPPORTED_SUFFIXES
from retinascreen.errors import ConfigError, DatasetError
from retinascreen.result import Prediction, PredictionError

COLUMNS = (
    "path",
    "patient",
    "eye",
    "grade",
    "label",
    "p0",
    "p1",
    "p2",
    "p3",
    "p4",
    "referable",
    "referable_probability",
    "gradable",
    "quality_score",
    "quality_reasons",
    "error",
)
PATIENT_COLUMNS = (
    "patient",
    "images",
    "gradable_images",
    "status",
    "referable",
    "max_grade",
    "max_referable_probability",
)
SCREENING_ENGINES = ("local", "ray")


def result_row(relative: str, result: Prediction | PredictionError) -> dict[str, str]:
    """One CSV row from a Predictor result (or the error that stood in for it)."""
    patient, eye = patient_and_eye(relative)
    row = dict.fromkeys(COLUMNS, "")
    row.update(path=relative, patient=patient, eye=eye)
    if isinstance(result, PredictionError):
        row["error"] = result.error
        return row
    row.update(
        grade=str(result.grade),
        label=result.label,
        referable=_bool(result.referable),
        referable_probability=f"{result.referable_probability:.6f}",
        gradable=_bool(result.gradable),
        quality_score=f"{result.quality.score:.3f}",
        quality_reasons="; ".join(result.quality.reasons),
    )
    for i, p in enumerate(result.probabilities):
        row[f"p{i}"] = f"{p:.6f}"
    return row


def _bool(value: bool) -> str:
    return "true" if value else "false"


@dataclass
class ScreenSummary:
    """Counts of one screening run."""

    out: Path
    patients_out: Path
    images: int
    done_before: int
    processed: int
    errors: int
    ungradable: int
    referable: int

    def text(self) -> str:
        return (
            f"screened {self.images} images ({self.done_before} resumed, {self.processed} new): "
            f"{self.referable} referable, {self.ungradable} ungradable, {self.errors} errors; "
            f"wrote {self.out} and {self.patients_out}"
        )


def patients_path(out: Path) -> Path:
    """``results.csv`` -> ``results.patients.csv``."""
    return out.with_name(out.stem + ".patients.csv")


def read_done(out: Path) -> set[str]:
    """Paths already in a results CSV, after dropping a half-written last line."""
    if not out.exists() or out.stat().st_size == 0:
        return set()
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(out, "r+b") as f:
            f.truncate(cut)
            f.flush()
            os.fsync(f.fileno())
        data = data[:cut]
    reader = csv.DictReader(io.StringIO(data.decode("utf-8")))
    if reader.fieldnames is None:
        return set()
    if tuple(reader.fieldnames) != COLUMNS:
        raise ConfigError(
            f"{out}: not a retinascreen results file (its columns differ); "
            "choose another --out or remove it"
        )
    return {plain_cell(row["path"]) for row in reader}


def screen(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model: str | os.PathLike | None = None,
    engine: str = "local",
    resume: bool = False,
    batch_size: int = 16,
    progress: bool = True,
    ray_address: str | None = None,
    concurrency: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> ScreenSummary:
    """Screen every image under ``folder`` into the CSV ``out``; see the module docstring.

    ``on_batch(n_rows_written)`` is called after each batch is safely on disk.
    Without ``resume`` an existing ``out`` is started afresh.
    """
    if engine not in SCREENING_ENGINES:
        raise ConfigError(f"unknown engine {engine!r} (expected {' or '.join(SCREENING_ENGINES)})")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    folder, out = Path(folder), Path(out)
    images = find_images(folder)
    if not images:
        raise DatasetError(
            f"{folder}: no images found (looked for {', '.join(SUPPORTED_SUFFIXES)})"
        )
    rel = [p.relative_to(folder).as_posix() for p in images]
    out.parent.mkdir(parents=True, exist_ok=True)
    done = read_done(out) if resume else set()
    todo = [r for r in rel if r not in done]

    from retinascreen.models.engines import resolve_model_path

    model_path = resolve_model_path(model)
    if not resume or not out.exists() or out.stat().st_size == 0:
        with open(out, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(COLUMNS)
            f.flush()
            os.fsync(f.fileno())
    batches = (
        _local_batches(folder, todo, model_path, batch_size)
        if engine == "local"
        else _ray_batches(folder, todo, model_path, batch_size, ray_address, concurrency)
    )
    written = 0
    from retinascreen.serving.anatomy import EyeFiller

    eyes = EyeFiller(folder)  # the eye from the photo where the file name does not say
    bar = _progress(len(rel), len(rel) - len(todo), progress)
    try:
        with open(out, "a", newline="", encoding="utf-8") as f:
            writer = SafeDictWriter(f, COLUMNS)
            for rows in batches:
                writer.writerows(eyes.fill(rows))
                f.flush()
                os.fsync(f.fileno())
                written += len(rows)
                bar.update(len(rows))
                if on_batch is not None:
                    on_batch(written)
    finally:
        bar.close()
    rows = _finalise(out)
    _write_patients(patients_path(out), rows)
    return ScreenSummary(
        out=out,
        patients_out=patients_path(out),
        images=len(rows),
        done_before=len(rel) - len(todo),
        processed=written,
        errors=sum(1 for r in rows if r["error"]),
        ungradable=sum(1 for r in rows if r["gradable"] == "false"),
        referable=sum(1 for r in rows if r["referable"] == "true" and r["gradable"] == "true"),
    )


def _progress(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc="screening", disable=not enabled)


def _local_batches(
    folder: Path, todo: Sequence[str], model_path: Path, batch_size: int
) -> Iterable[list[dict[str, str]]]:
    if not todo:
        return
    from retinascreen.serving.predictor import Predictor
    from retinascreen.serving.step import screen_batch

    predictor = Predictor(model_path)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        results = screen_batch(predictor, [folder / r for r in chunk], batch_size=batch_size)
        yield [result_row(r, res) for r, res in zip(chunk, results, strict=True)]


class RayScreeningActor:
    """Ray Data UDF: one Predictor per actor, a batch of relative paths in, CSV fields out."""

    def __init__(self, folder: str, model_path: str) -> None:
        from retinascreen.serving.predictor import Predictor

        self.folder = Path(folder)
        self.predictor = Predictor(model_path)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        from retinascreen.serving.step import screen_batch

        paths = [str(p) for p in batch["path"]]
        results = screen_batch(
            self.predictor, [self.folder / p for p in paths], batch_size=max(1, len(paths))
        )
        rows = [result_row(p, r) for p, r in zip(paths, results, strict=True)]
        return {c: np.array([row[c] for row in rows], dtype=object) for c in COLUMNS}


def _ray_init(ray_address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
        )


def _ray_batches(
    folder: Path,
    todo: Sequence[str],
    model_path: Path,
    batch_size: int,
    ray_address: str | None,
    concurrency: int | None,
) -> Iterable[list[dict[str, str]]]:
    if not todo:
        return
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("--engine ray needs Ray: pip install 'retinascreen[ray]'") from exc
    _ray_init(ray_address)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    workers = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)) // 2)
    ds: Any = ray.data.from_items([{"path": r} for r in todo])
    ds = ds.map_batches(
        RayScreeningActor,
        fn_constructor_args=(str(folder.resolve()), str(model_path.resolve())),
        compute=ray.data.ActorPoolStrategy(size=workers),
        batch_size=batch_size,
        batch_format="numpy",
    )
    for batch in ds.iter_batches(batch_size=batch_size, batch_format="numpy"):
        n = len(batch["path"])
        yield [{c: str(batch[c][i]) for c in COLUMNS} for i in range(n)]


def _finalise(out: Path) -> list[dict[str, str]]:
    """Rewrite ``out`` sorted by path, one row per path (atomically); returns the rows."""
    with open(out, newline="", encoding="utf-8") as f:
        rows = {row["path"]: row for row in read_plain_rows(f)}
    ordered = [rows[k] for k in sorted(rows)]
    _atomic_csv(out, COLUMNS, ordered)
    return ordered


def _atomic_csv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = SafeDictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def summarise_patients(rows: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    """Patient-level verdicts: referable if any gradable eye is; ungradable if none is gradable."""
    by_patient: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_patient.setdefault(row["patient"], []).append(row)
    summary = []
    for patient in sorted(by_patient):
        eyes = by_patient[patient]
        gradable = [r for r in eyes if r["gradable"] == "true" and not r["error"]]
        if not gradable:
            status, referable, max_grade, max_p = "ungradable", "", "", ""
        else:
            is_ref = any(r["referable"] == "true" for r in gradable)
            status = "referable" if is_ref else "not referable"
            referable = _bool(is_ref)
            max_grade = str(max(int(r["grade"]) for r in gradable))
            max_p = f"{max(float(r['referable_probability']) for r in gradable):.6f}"
        summary.append(
            {
                "patient": patient,
                "images": len(eyes),
                "gradable_images": len(gradable),
                "status": status,
                "referable": referable,
                "max_grade": max_grade,
                "max_referable_probability": max_p,
            }
        )
    return summary


def _write_patients(path: Path, rows: Iterable[dict[str, str]]) -> None:
    _atomic_csv(path, PATIENT_COLUMNS, summarise_patients(rows))
