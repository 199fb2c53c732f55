"""The quality gate and the fundus crop on real photographs: gradable shares, reasons, crop fill.

Run: ``.venv/bin/python bench/quality.py [--eyepacs-every 1]``. Needs ``../shared/data``
(DRIVE, IDRiD, srahim-dr, the EyePACS 256 px set and its EyeQ labels; never copied into the
repository). Per set it prints the share judged gradable, the reasons given, and the crop's
fill (the share of the model's input square covered by the fundus field of view inside the
photo: min and median). For EyeQ's held-back part (the photos the learned score was neither
trained nor tuned on, listed in the model file) it prints the confusion table (grader's label x
verdict and x the gate's three-way label) and the ROC AUC of the score for Reject vs the rest.
Sets:
- gradable real photos: DRIVE (40 raw), EyePACS-256 (4,040 cropped and enhanced),
  ``skimage.data.retina`` at 200-2800 px, and real photos in the layouts users upload (raw
  5 MP frames with black borders, clipped top and bottom, narrow borders, grey and white
  backgrounds, 200 px and 5,000 px, JPEG quality 40);
- ungradable: real photos degraded as a grader would reject them (defocus of 2 % and 3 % of the
  fundus diameter, under- and over-exposure, haze, an eyelid shadow over half the field) and
  the synthetic generator's ungradable photos (dark, over-exposed, blurred, occluded);
- not a fundus: faces, documents, a screenshot, a white wall, round objects on black, noise,
  anterior-segment look-alikes, a slit-lamp beam (``photo_sets.non_fundus_lookalikes``);
- wide-field layouts: real photos filling a 760 x 570 frame, clipped on two or four sides, with
  a burned-in timestamp or a grey surround, and at 500 px (``photo_sets.wide_layouts``).
Targets (issues 10 and 23): on EyeQ's held-back part Reject caught >= 80 %, Good passed >= 97 %,
Usable >= 90 %; >= 98 % gradable on DRIVE, IDRiD and srahim-dr and no "no fundus disc found"
on a real fundus; >= 95 % of degraded and synthetic ungradable rejected; 100 % of non-fundi
refused as "no fundus disc found"; fill >= 70 %.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from tests.helpers import photo_sets as sets  # noqa: E402

from retinascreen.data.fundus import (  # noqa: E402
    REASON_NO_DISC,
    assess_quality,
    crop_fill,
    find_disc,
)
from retinascreen.data.images import load_image  # noqa: E402
from retinascreen.data.quality_model import bundled_model  # noqa: E402


class Tally:
    """Verdicts of one set of photographs."""

    def __init__(self, name: str, expect_gradable: bool) -> None:
        self.name, self.expect_gradable = name, expect_gradable
        self.n = self.gradable = 0
        self.reasons: collections.Counter[str] = collections.Counter()
        self.fills: list[float] = []
        self.misses: list[str] = []

    def add(self, label: str, rgb: np.ndarray) -> None:
        disc = find_disc(rgb)
        verdict = assess_quality(rgb, disc=disc)
        self.n += 1
        self.gradable += verdict.gradable
        self.reasons.update(verdict.reasons)
        if self.expect_gradable and disc is not None:
            self.fills.append(crop_fill(rgb, disc))
        if verdict.gradable != self.expect_gradable:
            self.misses.append(f"{label}: {', '.join(verdict.reasons) or 'gradable'}")

    def row(self) -> str:
        share = 100 * self.gradable / max(1, self.n)
        reasons = ", ".join(f"{r} {c}" for r, c in self.reasons.most_common()) or "-"
        fill = (
            f"{100 * min(self.fills):.0f} / {100 * float(np.median(self.fills)):.0f} %"
            if self.fills
            else "-"
        )
        no_disc = self.reasons[REASON_NO_DISC]
        return f"| {self.name} | {self.n} | {share:.1f} % | {no_disc} | {reasons} | {fill} |"


def run(tally: Tally, photos: Iterable[tuple[str, np.ndarray]]) -> Tally:
    for label, rgb in photos:
        tally.add(label, rgb)
    return tally


def synthetic_ungradable(n_each: int) -> Iterable[tuple[str, np.ndarray]]:
    from retinascreen.synthetic import UNGRADABLE_KINDS, generate

    for kind in UNGRADABLE_KINDS:
        for seed in range(n_each):
            yield (
                f"synthetic {kind} {seed}",
                generate(9_000_000 + seed, size=512, ungradable=kind).image,
            )


def srahim_some() -> list[tuple[str, np.ndarray]]:
    paths = sorted(sets.SHARED_DATA.glob("srahim-dr/*/*.jpg"))[::50]
    return [(p.name, load_image(p)) for p in paths]


def raw_sets() -> dict[str, list[Path]]:
    idrid = sets.SHARED_DATA / "idrid-segmentation" / "A. Segmentation" / "1. Original Images"
    return {
        "IDRiD segmentation (raw, 2000 x 1328)": sorted(idrid.glob("*/*.jpg")),
        "srahim-dr (raw, 1024 px)": sorted(sets.SHARED_DATA.glob("srahim-dr/*/*.jpg")),
    }


def eyeq_held_back() -> None:
    """Confusion table and ROC AUC on the EyeQ photos the learned score never saw."""
    model = bundled_model()
    if model is None:
        print("no bundled quality model")
        return
    held = set(model.meta["test_images"])
    labels = {name: label for name, label in sets.eyeq_quality().items() if name in held}
    table: collections.Counter[tuple[str, str]] = collections.Counter()
    scores, rejects = [], []
    for name, label in sorted(labels.items()):
        verdict = assess_quality(sets.eyepacs_photo(name))
        table[label, "gradable" if verdict.gradable else "refused"] += 1
        table[label, verdict.label or "-"] += 1
        scores.append(verdict.score)
        rejects.append(label == "Reject")
    columns = ("gradable", "refused", "good", "usable", "reject")
    print(f"\nEyeQ held-back part ({len(labels)} photos, patients never trained or tuned on)")
    print("| grader \\ gate | " + " | ".join(columns) + " | passed |")
    print("|---|" + "---:|" * (len(columns) + 1))
    for label in ("Good", "Usable", "Reject"):
        n = sum(table[label, c] for c in columns[:2])
        cells = " | ".join(str(table[label, c]) for c in columns)
        print(f"| {label} | {cells} | {100 * table[label, 'gradable'] / max(1, n):.1f} % |")
    auc = roc_auc_score(rejects, -np.asarray(scores))
    print(f"ROC AUC of the score, Reject vs Good + Usable: {auc:.3f}")
    print(f"learned-score threshold: P(reject) >= {model.reject_threshold:.3f} is refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--eyepacs-every", type=int, default=1, help="take every k-th EyePACS photo"
    )
    parser.add_argument(
        "--synthetic", type=int, default=25, help="synthetic ungradable photos per kind"
    )
    parser.add_argument("--show-misses", type=int, default=8)
    args = parser.parse_args()
    if not sets.shared_data_available():
        sys.exit(f"needs the real photographs in {sets.SHARED_DATA}")
    start = time.perf_counter()
    retina = sets.skimage_retina()
    drive = list(sets.drive_photos())
    some_eyepacs = list(sets.eyepacs_photos(limit=12, every=300))
    layout_sources = [("retina", retina), *drive[:4:2], *some_eyepacs[:3]]
    degrade_sources = [("retina", retina), *drive[::4], *some_eyepacs[::2]]
    tallies = [
        run(Tally("DRIVE (raw, 565 x 584)", True), drive),
        *(
            run(Tally(name, True), ((p.name, load_image(p)) for p in paths))
            for name, paths in raw_sets().items()
        ),
        run(
            Tally("EyePACS-256 (cropped, enhanced)", True),
            sets.eyepacs_photos(every=args.eyepacs_every),
        ),
        run(
            Tally("skimage retina, 200-2800 px", True),
            (
                (f"retina {s}", sets.resize_long_side(retina, s))
                for s in (200, 300, 512, 1024, 1411, 2800)
            ),
        ),
        run(
            Tally("real photos in upload layouts", True),
            (item for name, rgb in layout_sources for item in sets.real_layouts(rgb, name)),
        ),
        run(
            Tally("degraded real photos", False),
            ((name, rgb) for name, rgb, _ in sets.degraded(iter(degrade_sources))),
        ),
        run(Tally("synthetic ungradable", False), synthetic_ungradable(args.synthetic)),
        run(Tally("not a fundus (look-alikes)", False), sets.non_fundus_lookalikes()),
        run(
            Tally("wide-field layouts (760 x 570 and 500 px)", True),
            (
                item
                for name, rgb in [*drive[::8], *srahim_some()]
                for item in sets.wide_layouts(rgb, name)
            ),
        ),
    ]
    print("| set | photos | gradable | 'no fundus disc found' | reasons | crop fill min / median |")
    print("|---|---:|---:|---:|---|---:|")
    for tally in tallies:
        print(tally.row())
    real = [t for t in tallies if t.expect_gradable]
    no_disc = sum(t.reasons[REASON_NO_DISC] for t in real)
    print(f"\n'no fundus disc found' on real fundus photos: {no_disc}")
    for tally in tallies:
        for miss in tally.misses[: args.show_misses]:
            print(f"  miss [{tally.name}] {miss}")
    eyeq_held_back()
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
