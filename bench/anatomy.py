"""Disc, fovea, laterality and the maculopathy flag on photos the models never saw.

    nice -n 15 env PYTHONPATH=src python bench/anatomy.py [--macula-every N] [--threads 1]

1. srahim-dr (596 raw photos of another clinic and camera; never trained on): laterality
   (disc side relative to the fovea) against the ``_L`` / ``_R`` in the file names, overall
   and among confident calls; the maculopathy flag (hard exudates, and the variants with
   haemorrhages / microaneurysms, within 1 disc diameter of the fovea) against the
   publisher's maculopathy label (photos of "advanced diabetic eye disease" have none and are
   left out): sensitivity and specificity;
2. IDRiD test (27 macula-centred photos): the fovea's distance from the centre of the field,
   in disc diameters (a macula-centred photo puts the fovea near the centre; a sanity check,
   not a measurement of fovea error, as no fovea labels are used here);
3. a sheet of marked photos (disc outline, fovea, macular circle) under ``runs/anatomy/`` to
   look at.

Per-photo rows are cached in ``runs/anatomy/srahim.csv`` (delete it to re-run). Writes
``bench/results/anatomy.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SRAHIM = ROOT.parent / "shared" / "data" / "srahim-dr"
IDRID = ROOT.parent / "shared" / "data" / "idrid-segmentation"
RUNS = ROOT / "runs" / "anatomy"
RESULTS = ROOT / "bench" / "results" / "anatomy"
LESIONS = ("hard_exudate", "haemorrhage", "microaneurysm", "cotton_wool")
FIELDS = ["file", "eye", "maculopathy", "grade", "disc_x", "disc_y", "disc_diameter",
          "disc_confidence", "fovea_x", "fovea_y", "fovea_confidence", "laterality", "macula_checked",
          *[f"area_{n}" for n in LESIONS]]  # fmt: skip


def srahim_rows(macula_every: int, threads: int | None) -> list[dict[str, str]]:
    """One row per srahim-dr photo (cached): the anatomy of every photo, and the lesion area
    near the fovea of every ``macula_every``-th photo (1 = all; the lesion model at 1024 px is
    the slow part)."""
    from retinascreen.data.images import load_image
    from retinascreen.serving.maculopathy import MaculaCheck, MaculopathyRule

    cache = RUNS / "srahim.csv"
    done: dict[str, dict[str, str]] = {}
    if cache.is_file():
        with cache.open() as fh:
            done = {row["file"]: row for row in csv.DictReader(fh)}
    with (SRAHIM / "labels.csv").open() as fh:
        labels = list(csv.DictReader(fh))
    rule = MaculopathyRule(lesions=LESIONS, min_area_of_disc=0.0)
    check = MaculaCheck(rule, threads=threads)
    RUNS.mkdir(parents=True, exist_ok=True)
    new = not cache.is_file()
    with cache.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        start = time.monotonic()
        for i, label in enumerate(labels):
            known = done.get(label["file"])
            if known and (i % macula_every or known["macula_checked"] == "1"):
                continue  # cached (a row lacking the lesion check is redone when asked for)
            rgb = load_image(SRAHIM / label["file"])
            areas: dict[str, float] = {}
            if i % macula_every == 0:
                result = check.check(rgb)
                a, areas = result.anatomy, result.areas
                if a is not None and a.fovea_centre is not None and not areas:
                    areas = dict.fromkeys(LESIONS, 0.0)
            else:
                a = check.finder.find(rgb)
            stem = Path(label["file"]).stem
            fovea = None if a is None else a.fovea_centre
            row = {
                "file": label["file"],
                "eye": "left" if stem.endswith("_L") else "right" if stem.endswith("_R") else "",
                "maculopathy": label["maculopathy"],
                "grade": label["icdr_grade"],
                "disc_x": "" if a is None else f"{a.disc_centre[0]:.1f}",
                "disc_y": "" if a is None else f"{a.disc_centre[1]:.1f}",
                "disc_diameter": "" if a is None else f"{a.disc_diameter:.1f}",
                "disc_confidence": "" if a is None else f"{a.disc_confidence:.3f}",
                "fovea_x": "" if fovea is None else f"{fovea[0]:.1f}",
                "fovea_y": "" if fovea is None else f"{fovea[1]:.1f}",
                "fovea_confidence": "" if a is None else f"{a.fovea_confidence:.3f}",
                "laterality": "" if a is None or a.laterality is None else a.laterality,
                "macula_checked": "1" if i % macula_every == 0 else "0",
            } | {f"area_{n}": f"{areas[n]:.5f}" if n in areas else "" for n in LESIONS}
            writer.writerow(row)
            fh.flush()
            done[label["file"]] = row
            if i % 20 == 0:
                print(f"{i + 1}/{len(labels)} {time.monotonic() - start:.0f}s", flush=True)
    return [done[label["file"]] for label in labels if label["file"] in done]


def laterality_table(rows: list[dict[str, str]]) -> tuple[list[str], dict]:
    scored = [r for r in rows if r["eye"]]
    called = [r for r in scored if r["laterality"]]
    right = [r for r in called if r["laterality"] == r["eye"]]
    out = {"photos": len(scored), "called": len(called), "correct": len(right),
           "accuracy_of_all": len(right) / max(1, len(scored))}  # fmt: skip
    lines = [
        "| photos | laterality given | correct | accuracy (of all photos) |",
        "|---|---|---|---|",
        f"| {len(scored)} | {len(called)} | {len(right)} | {out['accuracy_of_all']:.4f} |",
    ]
    for floor in (0.25, 0.5):
        sure = [r for r in called if float(r["fovea_confidence"] or 0) >= floor]
        ok = sum(r["laterality"] == r["eye"] for r in sure)
        out[f"confidence_{floor}"] = {"photos": len(sure), "correct": ok}
        lines.append(
            f"| confidence >= {floor}: {len(sure)} | | {ok} | {ok / max(1, len(sure)):.4f} |"
        )
    return lines, out


def maculopathy_table(rows: list[dict[str, str]], min_area: float) -> tuple[list[str], dict]:
    scored = [r for r in rows if r["maculopathy"] in ("0", "1") and r["macula_checked"] == "1"]
    truth = np.array([r["maculopathy"] == "1" for r in scored])
    out: dict = {"photos": len(scored), "positives": int(truth.sum()), "min_area_of_disc": min_area}
    lines = [
        f"{len(scored)} photos ({int(truth.sum())} with the maculopathy label); a photo is "
        f"flagged when the rule's lesions cover >= {min_area:g} of the disc's area within 1 "
        "disc diameter of the fovea (no fovea placed: not flagged).", "",
        "| rule | sensitivity | specificity | flagged |", "|---|---|---|---|",
    ]  # fmt: skip
    for lesions in (("hard_exudate",), ("hard_exudate", "haemorrhage"),
                    ("hard_exudate", "haemorrhage", "microaneurysm")):  # fmt: skip
        flags = []
        for r in scored:
            values = [float(r[f"area_{n}"]) for n in lesions if r[f"area_{n}"]]
            flags.append(any(v >= min_area and v > 0 for v in values))
        flag = np.array(flags)
        sens = float((flag & truth).sum() / max(1, truth.sum()))
        spec = float((~flag & ~truth).sum() / max(1, (~truth).sum()))
        name = " + ".join(lesions)
        out[name] = {"sensitivity": sens, "specificity": spec, "flagged": int(flag.sum())}
        lines.append(f"| {name} | {sens:.3f} | {spec:.3f} | {int(flag.sum())} |")
    return lines, out


def idrid_fovea(threads: int | None) -> tuple[list[str], dict]:
    """Fovea distance from the field centre on IDRiD's macula-centred test photos; a sheet."""
    import cv2

    from retinascreen.data.fundus import find_disc
    from retinascreen.data.idrid_masks import read_idrid_masks
    from retinascreen.data.images import load_image
    from retinascreen.serving.anatomy import AnatomyFinder, draw_anatomy

    finder = AnatomyFinder(threads=threads)
    distances, tiles = [], []
    for photo in read_idrid_masks(IDRID, "test"):
        rgb = load_image(photo.image)
        a = finder.find(rgb)
        field = find_disc(rgb)
        if a is None or a.fovea_centre is None or field is None:
            distances.append(math.inf)
            continue
        distances.append(math.hypot(a.fovea_centre[0] - field.cx, a.fovea_centre[1] - field.cy)
                         / a.disc_diameter)  # fmt: skip
        tiles.append(cv2.resize(draw_anatomy(rgb, a), (300, 200)))
    RUNS.mkdir(parents=True, exist_ok=True)
    rows = [np.hstack(tiles[i : i + 6] + [np.zeros_like(tiles[0])] * (6 - len(tiles[i : i + 6])))
            for i in range(0, len(tiles), 6)]  # fmt: skip
    cv2.imwrite(
        str(RUNS / "idrid-test-anatomy.png"), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR)
    )
    d = np.array(distances)
    out = {"photos": len(d), "median_dd": float(np.median(d)),
           "within_0.5_dd": int((d <= 0.5).sum()), "within_1_dd": int((d <= 1).sum())}  # fmt: skip
    lines = [
        "| photos | fovea found | median distance from field centre | within 0.5 DD | within 1 DD |",
        "|---|---|---|---|---|",
        f"| {len(d)} | {int(np.isfinite(d).sum())} | {out['median_dd']:.2f} DD | "
        f"{out['within_0.5_dd']} | {out['within_1_dd']} |",
    ]
    return lines, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--macula-every", type=int, default=1, help="check maculopathy on every N-th photo"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-area", type=float, default=None, help="default: the rule's")
    args = parser.parse_args(argv)
    from retinascreen.serving.maculopathy import MaculopathyRule

    min_area = MaculopathyRule().min_area_of_disc if args.min_area is None else args.min_area
    report: dict = {}
    command = (
        f"nice -n 15 env PYTHONPATH=src python bench/anatomy.py --macula-every {args.macula_every}"
    )
    lines = ["# Optic disc, fovea, laterality and maculopathy", "",
             f"Measured by `{command}` with the bundled `disc` and `lesions` models.", ""]  # fmt: skip
    fovea_lines, report["idrid_fovea"] = idrid_fovea(args.threads)
    lines += ["## Fovea on IDRiD's 27 macula-centred test photos", "", *fovea_lines, "",
              "Marked sheet: `runs/anatomy/idrid-test-anatomy.png` (not committed).", ""]  # fmt: skip
    rows = srahim_rows(args.macula_every, args.threads)
    lat_lines, report["laterality"] = laterality_table(rows)
    lines += [f"## Laterality on srahim-dr ({len(rows)} photos, `_L`/`_R` in the names)", "",
              *lat_lines, ""]  # fmt: skip
    mac_lines, report["maculopathy"] = maculopathy_table(rows, min_area)
    lines += ["## Maculopathy flag on srahim-dr", "", *mac_lines, ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".md").write_text("\n".join(lines))
    RESULTS.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
