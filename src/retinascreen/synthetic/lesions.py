"""Diabetic-retinopathy lesions drawn by the ICDR rules (from the *lesion* random stream).

:func:`plan_lesions` decides, for a grade, which lesions appear and how many (counts vary
within a grade so neighbouring grades overlap at their boundaries, but the rule always holds):

- 0 no DR: nothing.
- 1 mild NPDR: microaneurysms only (1..15).
- 2 moderate NPDR: haemorrhages and/or hard exudates, maybe cotton-wool spots and
  microaneurysms; fewer than 20 haemorrhages in every quadrant, no venous beading, no IRMA.
- 3 severe NPDR (4-2-1 rule): >= 20 haemorrhages in each of the 4 quadrants and/or venous
  beading in >= 2 quadrants and/or IRMA in >= 1 quadrant; no neovascularisation.
- 4 PDR: neovascularisation at the disc (NVD) or elsewhere (NVE) and/or pre-retinal
  haemorrhage, usually on top of moderate or severe NPDR lesions.

:func:`draw_lesions` draws them into one opacity canvas per lesion type; the boolean masks are
those canvases inside the field of view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np

from retinascreen.synthetic.anatomy import SCALE, SHIFT, Anatomy, absorb, draw_vessel
from retinascreen.synthetic.frame import QUADRANTS, quadrant_of

LESIONS: tuple[str, ...] = (
    "microaneurysm",
    "haemorrhage",
    "hard_exudate",
    "cotton_wool",
    "venous_beading",
    "irma",
    "neovascularisation",
    "preretinal_haemorrhage",
)
SEVERE_HAEMORRHAGES_PER_QUADRANT = 20
MASK_THRESHOLD = 48  # canvas opacity (0..255) from which a pixel counts as lesion


# ----------------------------------------------------------------------------- planning
def _moderate(rng: np.random.Generator) -> dict:
    level = rng.uniform(0.0, 0.6)
    haem = [
        int(rng.binomial(SEVERE_HAEMORRHAGES_PER_QUADRANT - 1, level * rng.uniform(0.2, 1.0)))
        for _ in QUADRANTS
    ]
    plan = {
        "microaneurysm": int(rng.integers(0, 26)),
        "haemorrhage_per_quadrant": haem,
        "hard_exudate_clusters": int(rng.integers(1, 5)) if rng.random() < 0.5 else 0,
        "cotton_wool": int(rng.integers(1, 4)) if rng.random() < 0.25 else 0,
    }
    if sum(haem) == 0 and plan["hard_exudate_clusters"] == 0:
        haem[int(rng.integers(0, 4))] = int(rng.integers(1, 6))
    return plan


def _severe(rng: np.random.Generator) -> dict:
    criteria = [
        c
        for c, p in (
            ("haemorrhages_4_quadrants", 0.75),
            ("venous_beading_2_quadrants", 0.3),
            ("irma_1_quadrant", 0.4),
        )
        if rng.random() < p
    ]
    if not criteria:
        criteria = [
            ("haemorrhages_4_quadrants", "venous_beading_2_quadrants", "irma_1_quadrant")[
                int(rng.integers(0, 3))
            ]
        ]
    plan = _moderate(rng)
    plan["microaneurysm"] = int(rng.integers(5, 31))
    if "haemorrhages_4_quadrants" in criteria:
        lo = SEVERE_HAEMORRHAGES_PER_QUADRANT
        plan["haemorrhage_per_quadrant"] = [int(rng.integers(lo, lo + 16)) for _ in QUADRANTS]
    order = [int(q) for q in rng.permutation(4)]
    if "venous_beading_2_quadrants" in criteria:
        plan["venous_beading_quadrants"] = sorted(order[: int(rng.integers(2, 5))])
    if "irma_1_quadrant" in criteria:
        plan["irma_quadrants"] = sorted(order[: int(rng.integers(1, 4))])
    if rng.random() < 0.6:
        plan["hard_exudate_clusters"] = int(rng.integers(1, 6))
    if rng.random() < 0.5:
        plan["cotton_wool"] = int(rng.integers(1, 7))
    plan["severe_criteria"] = criteria
    return plan


def plan_lesions(rng: np.random.Generator, grade: int) -> dict:
    """What to draw for an eye of ``grade`` (counts, quadrants, criteria met)."""
    if grade == 0:
        return {}
    if grade == 1:
        return {"microaneurysm": int(1 + rng.binomial(14, rng.uniform(0.05, 0.7)))}
    if grade == 2:
        return _moderate(rng)
    if grade == 3:
        return _severe(rng)
    u = rng.random()
    background = (
        _moderate(rng)
        if u < 0.5
        else _severe(rng)
        if u < 0.9
        else {"microaneurysm": int(rng.integers(1, 16))}
    )
    u = rng.random()
    nv = ["nvd"] if u < 0.45 else ["nve"] if u < 0.7 else ["nvd", "nve"] if u < 0.85 else []
    preretinal = int(rng.integers(1, 3)) if (not nv or rng.random() < 0.3) else 0
    background.pop("severe_criteria", None)
    return {**background, "neovascularisation": nv, "preretinal_haemorrhage": preretinal}


# ----------------------------------------------------------------------------- drawing helpers
def _fp(x: float) -> int:
    return int(round(x * SCALE))


class _Sampler:
    """Rejection sampling of visible retina positions (inside the image and the field of view)."""

    def __init__(self, rng: np.random.Generator, anat: Anatomy, meta: dict):
        self.rng, self.anat, self.meta = rng, anat, meta
        f = anat.frame
        self.centre = np.array([f.cx, f.cy])
        self.R = f.radius

    def points(
        self,
        n: int,
        *,
        quadrant: int | None = None,
        around: np.ndarray | None = None,
        spread: float = 0.0,
        pole: float = 0.5,
        avoid_disc: float = 1.4,
    ) -> np.ndarray:
        if n <= 0:
            return np.zeros((0, 2))
        f, rng, found = self.anat.frame, self.rng, []
        total = 0
        for _ in range(200):
            m = max(16, 4 * n)
            if around is not None:
                cand = np.asarray(around) + rng.normal(0, spread, (m, 2))
            else:
                ang = rng.uniform(0, 2 * np.pi, m)
                rad = self.R * 0.96 * np.sqrt(rng.uniform(0, 1, m))
                cand = self.centre + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None]
                near = rng.random(m) < pole
                cand[near] = self.anat.fovea + rng.normal(0, 0.45 * self.R, (int(near.sum()), 2))
            ok = (
                (cand[:, 0] >= 2)
                & (cand[:, 0] < f.width - 2)
                & (cand[:, 1] >= 2)
                & (cand[:, 1] < f.height - 2)
                & (np.hypot(*(cand - self.centre).T) < 0.96 * self.R)
                & (np.hypot(*(cand - self.anat.disc).T) > avoid_disc * self.anat.disc_radius)
            )
            if quadrant is not None:
                ok &= quadrant_of(cand, self.meta) == quadrant
            found.append(cand[ok])
            total += int(ok.sum())
            if total >= n:
                break
        pts = np.concatenate(found)[:n]
        if len(pts) < n:
            raise RuntimeError("could not place lesions in the visible field of view")
        return pts


def _vessel_points(
    anat: Anatomy, *, max_depth: int, kind: str | None = None, min_width: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pts: list[np.ndarray] = []
    widths: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    for i, v in enumerate(anat.vessels):
        if v.depth <= max_depth and (kind is None or v.kind == kind):
            keep = v.widths >= min_width
            pts.append(v.points[keep])
            widths.append(v.widths[keep])
            owner.append(np.full(int(keep.sum()), i))
    if not pts:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0, int)
    return np.concatenate(pts), np.concatenate(widths), np.concatenate(owner)


def _visible(anat: Anatomy, pts: np.ndarray, margin: float = 0.95) -> np.ndarray:
    f = anat.frame
    return (
        (pts[:, 0] >= 1)
        & (pts[:, 0] < f.width - 1)
        & (pts[:, 1] >= 1)
        & (pts[:, 1] < f.height - 1)
        & (np.hypot(pts[:, 0] - f.cx, pts[:, 1] - f.cy) < margin * f.radius)
    )


def _tangle(
    rng: np.random.Generator,
    canvas: np.ndarray,
    centre: np.ndarray,
    extent: float,
    loops: int,
    width: float,
    R: float,
) -> None:
    """Fine tangled new vessels: loops of high curvature within ``extent`` of ``centre``."""
    for _ in range(loops):
        start = np.asarray(centre) + rng.normal(0, 0.5 * extent, 2)
        rho = rng.uniform(0.008, 0.025) * R
        step = max(0.5, 0.25 * rho)
        n = int(rng.uniform(1.0, 2.5) * 2 * math.pi * rho / step) + 3
        turn = (1 if rng.random() < 0.5 else -1) * step / rho + rng.normal(0, 0.35, n)
        h = rng.uniform(0, 2 * math.pi) + np.cumsum(turn)
        pts = start + np.cumsum(step * np.stack([np.cos(h), np.sin(h)], 1), 0)
        d = np.hypot(*(pts - centre).T)
        pts = pts[d < 1.3 * extent]
        if len(pts) > 1:
            draw_vessel(
                canvas, pts, np.full(len(pts), width), width, contrast=rng.uniform(0.85, 1.0)
            )


# ----------------------------------------------------------------------------- drawing
def draw_lesions(
    rng: np.random.Generator, plan: dict, anat: Anatomy, meta: dict
) -> tuple[dict, dict]:
    """Draw ``plan`` into uint8 canvases keyed by lesion name; returns (canvases, lesion meta).

    Venous beading is drawn into the vein canvas of ``anat`` as well (beads are vein calibre
    changes), so the vessels composited afterwards carry it.
    """
    f = anat.frame
    R = f.radius
    shape = (f.height, f.width)
    canvases: dict[str, np.ndarray] = {}
    info: dict = {}
    sampler = _Sampler(rng, anat, meta)

    def canvas(name: str) -> np.ndarray:
        if name not in canvases:
            canvases[name] = np.zeros(shape, np.uint8)
        return canvases[name]

    n_ma = plan.get("microaneurysm", 0)
    if n_ma:
        c = canvas("microaneurysm")
        for x, y in sampler.points(n_ma, pole=0.8):
            r = max(0.8, rng.uniform(0.004, 0.008) * R)
            cv2.circle(
                c, (_fp(x), _fp(y)), _fp(r), int(rng.integers(170, 256)), -1, cv2.LINE_AA, SHIFT
            )
        info["microaneurysm"] = n_ma

    per_q = plan.get("haemorrhage_per_quadrant", [0, 0, 0, 0])
    if sum(per_q):
        c = canvas("haemorrhage")
        for q, n in enumerate(per_q):
            for x, y in sampler.points(n, quadrant=q, pole=0.5):
                _haemorrhage(rng, c, x, y, R, anat.disc)
        info["haemorrhage"] = int(sum(per_q))
        info["haemorrhage_per_quadrant"] = [int(n) for n in per_q]

    n_ex = plan.get("hard_exudate_clusters", 0)
    if n_ex:
        c = canvas("hard_exudate")
        dfd = anat.disc_fovea_distance
        centres = sampler.points(n_ex, around=anat.fovea, spread=0.3 * dfd, avoid_disc=2.0)
        for x, y in centres:
            _exudate_cluster(rng, c, np.array([x, y]), R)
        info["hard_exudate_clusters"] = n_ex

    n_cw = plan.get("cotton_wool", 0)
    if n_cw:
        c = canvas("cotton_wool")
        pts, _, _ = _vessel_points(anat, max_depth=0)
        pts = pts[
            _visible(anat, pts, 0.85) & (np.hypot(*(pts - anat.disc).T) > 1.5 * anat.disc_radius)
        ]
        for _ in range(n_cw):
            if len(pts):
                centre = pts[rng.integers(0, len(pts))] + rng.normal(0, 0.03 * R, 2)
            else:
                centre = sampler.points(1)[0]
            for _ in range(int(rng.integers(2, 5))):
                r = rng.uniform(0.015, 0.04) * R
                off = centre + rng.normal(0, 0.4 * r, 2)
                cv2.ellipse(
                    c,
                    (_fp(off[0]), _fp(off[1])),
                    (_fp(r * rng.uniform(1.0, 1.6)), _fp(r)),
                    rng.uniform(0, 180),
                    0,
                    360,
                    int(rng.integers(150, 230)),
                    -1,
                    cv2.LINE_AA,
                    SHIFT,
                )
        info["cotton_wool"] = n_cw

    bead_q = plan.get("venous_beading_quadrants", [])
    if bead_q:
        info["venous_beading_quadrants"] = _venous_beading(
            rng, canvas("venous_beading"), anat, meta, bead_q
        )

    irma_q = plan.get("irma_quadrants", [])
    if irma_q:
        c = canvas("irma")
        for q in irma_q:
            for x, y in sampler.points(
                int(rng.integers(1, 4)), quadrant=q, pole=0.3, avoid_disc=2.5
            ):
                _irma(rng, c, np.array([x, y]), R)
        info["irma_quadrants"] = [QUADRANTS[q] for q in irma_q]

    nv = plan.get("neovascularisation", [])
    if nv:
        c = canvas("neovascularisation")
        width = max(0.6, 0.003 * R)
        if "nvd" in nv:
            centre = anat.disc + rng.normal(0, 0.4 * anat.disc_radius, 2)
            _tangle(
                rng,
                c,
                centre,
                anat.disc_radius * rng.uniform(0.9, 1.5),
                int(rng.integers(10, 24)),
                width,
                R,
            )
        if "nve" in nv:
            pts, _, _ = _vessel_points(anat, max_depth=1, kind="vein")
            pts = pts[
                _visible(anat, pts, 0.85) & (np.hypot(*(pts - anat.disc).T) > 3 * anat.disc_radius)
            ]
            for _ in range(int(rng.integers(1, 4))):
                centre = (
                    pts[rng.integers(0, len(pts))]
                    if len(pts)
                    else sampler.points(1, avoid_disc=3)[0]
                )
                _tangle(
                    rng, c, centre, rng.uniform(0.03, 0.07) * R, int(rng.integers(6, 14)), width, R
                )
        info["neovascularisation"] = list(nv)

    n_pr = plan.get("preretinal_haemorrhage", 0)
    if n_pr:
        c = canvas("preretinal_haemorrhage")
        pts, _, _ = _vessel_points(anat, max_depth=0)
        pts = pts[_visible(anat, pts, 0.8)]
        for _ in range(n_pr):
            if len(pts) and rng.random() < 0.7:
                centre = pts[rng.integers(0, len(pts))]
            else:
                centre = sampler.points(1, around=anat.fovea, spread=0.15 * R)[0]
            _boat(rng, c, centre, R)
        info["preretinal_haemorrhage"] = n_pr

    if "severe_criteria" in plan:
        info["severe_criteria"] = list(plan["severe_criteria"])
    return canvases, info


def _haemorrhage(
    rng: np.random.Generator, c: np.ndarray, x: float, y: float, R: float, disc: np.ndarray
) -> None:
    value = int(rng.integers(110, 230))
    u = rng.random()
    if u < 0.4:  # dot: round, darker core
        r = max(1.0, rng.uniform(0.007, 0.015) * R)
        cv2.circle(c, (_fp(x), _fp(y)), _fp(r), value, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(c, (_fp(x), _fp(y)), _fp(0.6 * r), min(255, value + 30), -1, cv2.LINE_AA, SHIFT)
    elif u < 0.85:  # blot: irregular cluster of small ellipses, denser towards its centre
        r = max(1.2, rng.uniform(0.012, 0.032) * R)
        for k in range(int(rng.integers(4, 10))):
            ox, oy = rng.normal(0, 0.4 * r, 2)
            size = r * rng.uniform(0.35, 0.7)
            cv2.ellipse(
                c,
                (_fp(x + ox), _fp(y + oy)),
                (_fp(size), _fp(size * rng.uniform(0.6, 1.0))),
                rng.uniform(0, 180),
                0,
                360,
                min(255, value + 4 * k),
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
    else:  # flame: feathered streaks along the nerve fibres, radial from the disc
        angle = math.atan2(y - disc[1], x - disc[0])
        a = max(1.5, rng.uniform(0.02, 0.05) * R)
        normal = np.array([-math.sin(angle), math.cos(angle)])
        for _ in range(int(rng.integers(2, 5))):
            off = normal * rng.normal(0, 0.12 * a) + np.array(
                [math.cos(angle), math.sin(angle)]
            ) * rng.normal(0, 0.15 * a)
            length = a * rng.uniform(0.6, 1.0)
            cv2.ellipse(
                c,
                (_fp(x + off[0]), _fp(y + off[1])),
                (_fp(length), _fp(max(0.6, length * rng.uniform(0.12, 0.25)))),
                math.degrees(angle) + rng.normal(0, 4),
                0,
                360,
                value,
                -1,
                cv2.LINE_AA,
                SHIFT,
            )


def _exudate_cluster(rng: np.random.Generator, c: np.ndarray, centre: np.ndarray, R: float) -> None:
    if rng.random() < 0.35:  # circinate ring around a leaking point
        ring = rng.uniform(0.04, 0.11) * R
        n = int(rng.integers(8, 31))
        start = rng.uniform(0, 2 * math.pi)
        ang = start + rng.uniform(0, rng.uniform(math.pi, 2 * math.pi), n)
        rad = ring * (1 + rng.normal(0, 0.12, n))
        pts = centre + np.stack([np.cos(ang), np.sin(ang)], 1) * rad[:, None]
    else:
        n = int(rng.integers(3, 26))
        pts = centre + rng.normal(0, rng.uniform(0.012, 0.045) * R, (n, 2))
    for x, y in pts:
        r = max(0.7, rng.uniform(0.0025, 0.009) * R)
        cv2.ellipse(
            c,
            (_fp(x), _fp(y)),
            (_fp(r * rng.uniform(1.0, 1.6)), _fp(r)),
            rng.uniform(0, 180),
            0,
            360,
            int(rng.integers(190, 256)),
            -1,
            cv2.LINE_AA,
            SHIFT,
        )


def _irma(rng: np.random.Generator, c: np.ndarray, start: np.ndarray, R: float) -> None:
    width = max(0.6, 0.0028 * R)
    step = max(0.5, 0.004 * R)
    for _ in range(int(rng.integers(2, 5))):
        n = int(rng.integers(12, 35))
        h = rng.uniform(0, 2 * math.pi) + np.cumsum(rng.normal(0, 0.55, n))
        pts = (
            start
            + rng.normal(0, 0.01 * R, 2)
            + np.cumsum(step * np.stack([np.cos(h), np.sin(h)], 1), 0)
        )
        draw_vessel(c, pts, np.full(n, width), width, contrast=rng.uniform(0.8, 1.0))


def _boat(rng: np.random.Generator, c: np.ndarray, centre: np.ndarray, R: float) -> None:
    """Boat-shaped pre-retinal haemorrhage: an ellipse with a flat (fluid-level) top."""
    a = rng.uniform(0.05, 0.12) * R
    b = a * rng.uniform(0.5, 0.8)
    m = int(a + 3)
    x0, y0 = int(centre[0]) - m, int(centre[1]) - m
    tile = np.zeros((2 * m + 1, 2 * m + 1), np.uint8)
    cx, cy = centre[0] - x0, centre[1] - y0
    cv2.ellipse(
        tile,
        (_fp(cx), _fp(cy)),
        (_fp(a), _fp(b)),
        rng.uniform(-10, 10),
        0,
        360,
        int(rng.integers(220, 256)),
        -1,
        cv2.LINE_AA,
        SHIFT,
    )
    level = int(round(cy - b * rng.uniform(0.0, 0.5)))
    tile[: max(0, level)] = 0
    h, w = c.shape
    xa, ya = max(0, x0), max(0, y0)
    xb, yb = min(w, x0 + tile.shape[1]), min(h, y0 + tile.shape[0])
    if xa < xb and ya < yb:
        region = c[ya:yb, xa:xb]
        np.maximum(region, tile[ya - y0 : yb - y0, xa - x0 : xb - x0], out=region)


def _venous_beading(
    rng: np.random.Generator, c: np.ndarray, anat: Anatomy, meta: dict, quadrants: list[int]
) -> list[str]:
    """Bead stretches of veins (sausage-like calibre changes) in the given quadrants."""
    R = anat.frame.radius
    pts, widths, owner = _vessel_points(
        anat, max_depth=2, kind="vein", min_width=max(0.9, 0.004 * R)
    )
    keep = _visible(anat, pts, 0.9) & (np.hypot(*(pts - anat.disc).T) > 1.8 * anat.disc_radius)
    pts, widths, owner = pts[keep], widths[keep], owner[keep]
    quad = quadrant_of(pts, meta) if len(pts) else np.zeros(0, int)
    done: list[str] = []
    wanted = list(quadrants) + [q for q in rng.permutation(4) if q not in quadrants]
    for q in wanted:
        if len(done) >= max(2, len(quadrants)):
            break
        idx = np.nonzero(quad == q)[0]
        if len(idx) == 0:
            continue
        i = int(idx[rng.integers(0, len(idx))])
        vessel = anat.vessels[int(owner[i])]
        j = int(np.argmin(np.hypot(*(vessel.points - pts[i]).T)))
        seg_len = np.hypot(*np.diff(vessel.points, axis=0).T)
        target = rng.uniform(0.12, 0.25) * R
        k = j
        while k + 1 < len(vessel.points) and seg_len[j:k].sum() < target:
            k += 1
        stretch, w = vessel.points[j : k + 1], vessel.widths[j : k + 1]
        if len(stretch) < 2:
            continue
        draw_vessel(c, stretch, w, float(w.max()))
        # beads every ~2.5 widths along the stretch
        along = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(stretch, axis=0).T))])
        spacing = max(2.0, 2.6 * float(w.mean()))
        for s in np.arange(0, along[-1], spacing):
            m = int(np.searchsorted(along, s).clip(0, len(stretch) - 1))
            r = max(0.8, w[m] * rng.uniform(0.8, 1.05))
            cv2.circle(
                c, (_fp(stretch[m][0]), _fp(stretch[m][1])), _fp(r), 255, -1, cv2.LINE_AA, SHIFT
            )
        np.maximum(anat.vein_canvas, c, out=anat.vein_canvas)
        done.append(QUADRANTS[q])
    return done


# ----------------------------------------------------------------------------- compositing
RED_ABSORBANCE = {
    "microaneurysm": np.array([0.45, 1.4, 1.3], np.float32),
    "haemorrhage": np.array([0.5, 1.3, 1.25], np.float32),
    "irma": np.array([0.45, 1.1, 1.0], np.float32),
    "neovascularisation": np.array([0.5, 1.4, 1.3], np.float32),
    "preretinal_haemorrhage": np.array([0.9, 2.3, 2.1], np.float32),
}
BRIGHT_COLOUR = {
    "hard_exudate": (
        np.array([1.0, 0.88, 0.42], np.float32),
        0.9,
        0.35,
    ),  # colour, opacity, blur px
    "cotton_wool": (np.array([0.98, 0.93, 0.78], np.float32), 0.75, 2.2),
}


def _soft(canvas: np.ndarray, sigma_px: float) -> np.ndarray:
    return cv2.GaussianBlur(canvas, (0, 0), max(0.35, sigma_px)) if sigma_px > 0 else canvas


def composite_bright(
    img: np.ndarray, canvases: dict[str, np.ndarray], anat: Anatomy, names: Iterable[str]
) -> None:
    """Blend yellow-white lesions (exudates, cotton-wool spots) over ``img`` in place."""
    scale = anat.frame.radius / 250
    for name in names:
        if name not in canvases:
            continue
        colour, opacity, blur = BRIGHT_COLOUR[name]
        alpha = _soft(canvases[name], blur * scale)
        ys, xs = np.nonzero(alpha)
        a = alpha[ys, xs].astype(np.float32)[:, None] * np.float32(opacity / 255)
        img[ys, xs] = img[ys, xs] * (1 - a) + a * colour


def composite_red(
    img: np.ndarray, canvases: dict[str, np.ndarray], anat: Anatomy, names: Iterable[str]
) -> None:
    """Darken ``img`` where red lesions (haemorrhages, microaneurysms, IRMA, NV) are."""
    sigma = max(0.4, 0.002 * anat.frame.radius)
    for name in names:
        if name in canvases:
            s = 3 * sigma if name == "preretinal_haemorrhage" else sigma
            absorb(img, _soft(canvases[name], s), RED_ABSORBANCE[name])


def lesion_masks(canvases: dict, fov: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean mask per lesion name (all of :data:`LESIONS`; empty where absent)."""
    inside = fov > 0.5
    masks = {}
    for name in LESIONS:
        if name in canvases:
            masks[name] = (canvases[name] >= MASK_THRESHOLD) & inside
        else:
            masks[name] = np.zeros(fov.shape, bool)
    return masks
