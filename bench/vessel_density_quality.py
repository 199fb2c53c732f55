"""Does vessel density inside the field of view improve the quality gate on real photographs?

Run: ``.venv/bin/python bench/vessel_density_quality.py [--model VESSELS.keras]
[--eyepacs-every 20]``. Needs ``../shared/data`` (as ``bench/quality.py``) and a vessel model
(default: the bundled one). The sets are ``bench/quality.py``'s: gradable real photos (DRIVE's
20 *test* photos - the vessel model trained on the other 20 -, EyePACS-256, the scikit-image
retina) and ungradable ones (the same real photos defocused, under- and over-exposed, hazy or
shaded by an eyelid; milder defocus and haze; the synthetic generator's ungradable photos).
It prints:

1. how well each quality measure alone separates gradable from ungradable photos (ROC AUC,
   whichever direction separates them), vessel density beside the existing measures;
2. the gate as it is and the gate with a vessel-density floor set on half of the photos (the
   gradable photos' 1st percentile) and judged on the other half: gradable kept, ungradable
   rejected, and the ungradable photos only the floor catches.
Vessel density joins the gate only if (2) rejects more ungradable photos at no loss of gradable ones.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tests.helpers import photo_sets as sets  # noqa: E402

from retinascreen.data.fundus import assess_quality, find_disc, quality_measures  # noqa: E402
from retinascreen.serving.segmenter import Segmenter  # noqa: E402

# Milder than bench/quality.py's: where the current gate's measures are least sure.
MILDER = {
    "defocus 1.5%": lambda rgb: sets.defocus(rgb, 0.015),
    "haze 60%": lambda rgb: sets.hazy(rgb, 0.60),
}


@dataclass
class Row:
    """One photograph: its set, whether it is gradable, the verdict and every measure."""

    name: str
    group: str
    gradable: bool
    gate: bool
    measures: dict[str, float]


def synthetic_ungradable(n_each: int) -> Iterator[tuple[str, np.ndarray]]:
    from retinascreen.synthetic import UNGRADABLE_KINDS, generate

    for kind in UNGRADABLE_KINDS:
        for seed in range(n_each):
            yield (
                f"synthetic {kind} {seed}",
                generate(9_000_000 + seed, size=512, ungradable=kind).image,
            )


def measure(
    segmenter: Segmenter, photos: Iterable[tuple[str, np.ndarray]], group: str, gradable: bool
) -> list[Row]:
    rows = []
    for name, rgb in photos:
        disc = find_disc(rgb)
        verdict = assess_quality(rgb, disc=disc)
        measures = quality_measures(rgb, disc) if disc is not None else {}
        density = segmenter.segment(rgb).vessel_density()
        if density is not None:
            measures["vessel_density"] = density
        rows.append(Row(name, group, gradable, verdict.gradable, measures))
    return rows


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a gradable photo's value > an ungradable one's), ties half (Mann-Whitney)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    values = np.concatenate([positive, negative])
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    for start, count in zip(first, counts, strict=True):
        ranks[order[start : start + count]] = start + (count + 1) / 2
    rank_sum = ranks[: len(positive)].sum()
    return float(
        (rank_sum - len(positive) * (len(positive) + 1) / 2) / (len(positive) * len(negative))
    )


def separation_table(rows: list[Row]) -> list[str]:
    names = sorted({k for r in rows for k in r.measures})
    lines = ["| measure | AUC gradable vs ungradable | direction | photos |", "|---|---:|---|---:|"]
    scored = []
    for name in names:
        good = np.array([r.measures[name] for r in rows if r.gradable and name in r.measures])
        bad = np.array([r.measures[name] for r in rows if not r.gradable and name in r.measures])
        value = auc(good, bad)
        direction = "higher = gradable" if value >= 0.5 else "lower = gradable"
        scored.append((max(value, 1 - value), name, direction, len(good) + len(bad)))
    for value, name, direction, n in sorted(scored, reverse=True):
        lines.append(f"| {name} | {value:.3f} | {direction} | {n} |")
    return lines


def gate_table(rows: list[Row], seed: int = 0) -> tuple[list[str], float]:
    """The gate alone vs the gate plus a density floor fitted on one half, judged on the other."""
    rng = np.random.default_rng(seed)
    fit = rng.random(len(rows)) < 0.5
    density = np.array([r.measures.get("vessel_density", np.nan) for r in rows])
    gradable = np.array([r.gradable for r in rows])
    gate = np.array([r.gate for r in rows])
    floor = float(np.nanpercentile(density[fit & gradable], 1))
    passes = gate & ~(density < floor)  # NaN density (no field) leaves the gate's verdict
    held = ~fit
    lines = [
        "| set (held-out half) | photos | passed: current gate | passed: + density floor |",
        "|---|---:|---:|---:|",
    ]
    for group in dict.fromkeys(r.group for r in rows):
        mine = held & np.array([r.group == group for r in rows])
        if not mine.any():
            continue
        lines.append(
            f"| {group} | {int(mine.sum())} | {100 * gate[mine].mean():.1f} % "
            f"| {100 * passes[mine].mean():.1f} % |"
        )
    for label, verdict in (("current gate", gate), (f"+ density >= {floor:.4f}", passes)):
        kept = verdict[held & gradable].mean()
        rejected = 1 - verdict[held & ~gradable].mean()
        lines.append(
            f"| all, {label}: gradable kept {100 * kept:.1f} %, "
            f"ungradable rejected {100 * rejected:.1f} % | | | |"
        )
    lines += [
        "",
        "| density floor (gradable percentile, fit half) | gradable kept | ungradable rejected |",
    ]
    lines.append("|---|---:|---:|")
    for pct in (1, 2, 5, 10):
        level = float(np.nanpercentile(density[fit & gradable], pct))
        verdict = gate & ~(density < level)
        lines.append(
            f"| p{pct} = {level:.4f} | {100 * verdict[held & gradable].mean():.1f} % "
            f"| {100 * (1 - verdict[held & ~gradable].mean()):.1f} % |"
        )
    caught = [r for r, g, p, h in zip(rows, gate, passes, held, strict=True) if h and g and not p]
    lines.append("")
    lines.append(f"caught only by the density floor (held-out half): {len(caught)}")
    lines += [
        f"  {'gradable' if r.gradable else 'ungradable'}: {r.group} / {r.name}" for r in caught[:15]
    ]
    return lines, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="vessel segmentation model (default: the bundled one)")
    parser.add_argument("--eyepacs-every", type=int, default=40, help="every k-th EyePACS photo")
    parser.add_argument("--synthetic", type=int, default=10, help="synthetic ungradable per kind")
    args = parser.parse_args()
    if not sets.shared_data_available():
        sys.exit(f"needs the real photographs in {sets.SHARED_DATA}")
    segmenter = Segmenter(args.model, "vessels")
    start = time.perf_counter()
    drive = [(n, rgb) for n, rgb in sets.drive_photos() if "test" in n]  # unseen by the model
    eyepacs = list(sets.eyepacs_photos(every=args.eyepacs_every))
    retina = [("retina", sets.skimage_retina())]
    sources = [*retina, *drive[::2], *eyepacs[::4]]
    rows = [
        *measure(segmenter, drive, "DRIVE test", True),
        *measure(segmenter, eyepacs, "EyePACS-256", True),
        *measure(segmenter, retina, "skimage retina", True),
        *measure(
            segmenter,
            ((name, rgb) for name, rgb, _ in sets.degraded(iter(sources))),
            "degraded real",
            False,
        ),
        *measure(
            segmenter,
            ((f"{n}/{kind}", make(rgb)) for n, rgb in sources for kind, make in MILDER.items()),
            "milder degradations",
            False,
        ),
        *measure(segmenter, synthetic_ungradable(args.synthetic), "synthetic ungradable", False),
    ]
    model = segmenter.model_info
    print(f"vessel model: {model['name']} {model['version']} ({segmenter.model_path.name})")
    n_good = sum(r.gradable for r in rows)
    print(f"photos: {n_good} gradable, {len(rows) - n_good} ungradable\n")
    print("\n".join(separation_table(rows)))
    print()
    lines, _ = gate_table(rows)
    print("\n".join(lines))
    for group in sorted({r.group for r in rows}):
        values = [
            r.measures["vessel_density"]
            for r in rows
            if r.group == group and "vessel_density" in r.measures
        ]
        if values:
            print(
                f"vessel density, {group}: median {np.median(values):.4f}, "
                f"5-95 % {np.percentile(values, 5):.4f}-{np.percentile(values, 95):.4f}"
            )
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
