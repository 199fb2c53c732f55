"""The healthy eye: background with choroidal texture, optic disc and cup, macula, vessel tree.

Everything here is drawn from the *anatomy* random stream only, so it never depends on the
grade. :func:`build_anatomy` draws the structure; :func:`render_background` the reflectance
image without vessels; :func:`composite_vessels` lays the vessel canvases on top (after the
lesion step, which may bead veins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from retinascreen.synthetic.frame import Frame, pixel_grid

SHIFT = 3  # fixed-point bits for sub-pixel OpenCV drawing
SCALE = 1 << SHIFT


@dataclass
class Vessel:
    """One vessel segment of the tree, in image pixels."""

    points: np.ndarray  # (n, 2) float
    widths: np.ndarray  # (n,) float, pixels
    kind: str  # "vein" or "artery"
    depth: int  # 0 = main trunk from the disc


@dataclass
class Anatomy:
    """The structure of one healthy eye in image coordinates plus its drawing canvases."""

    frame: Frame
    disc: np.ndarray  # (2,) pixel centre of the disc
    disc_radius: float  # pixels
    fovea: np.ndarray  # (2,) pixel centre of the fovea
    vessels: list[Vessel]
    vein_canvas: np.ndarray  # uint8 (h, w): vein opacity
    artery_canvas: np.ndarray  # uint8 (h, w): artery opacity
    params: dict = field(default_factory=dict)
    background_seed: int = 0
    sheen: np.ndarray | None = None  # low-resolution nerve-fibre reflex along the vessels

    @property
    def disc_fovea_distance(self) -> float:
        return float(np.hypot(*(self.disc - self.fovea)))

    def meta(self) -> dict:
        """JSON-friendly description (positions, quadrant axes) for ``Sample.meta``."""
        nasal = self.disc - self.fovea
        nasal = nasal / max(np.hypot(*nasal), 1e-9)
        superior = self.frame.axes[1]
        superior = superior - (superior @ nasal) * nasal
        superior = superior / max(np.hypot(*superior), 1e-9)
        centre = (self.disc + self.fovea) / 2
        return {
            "eye": self.frame.eye,
            "fov_centre": [round(self.frame.cx, 2), round(self.frame.cy, 2)],
            "fov_radius": round(self.frame.radius, 2),
            "disc": [round(float(v), 2) for v in self.disc],
            "disc_radius": round(self.disc_radius, 2),
            "fovea": [round(float(v), 2) for v in self.fovea],
            "quadrant_centre": [round(float(v), 3) for v in centre],
            "nasal_axis": [round(float(v), 6) for v in nasal],
            "superior_axis": [round(float(v), 6) for v in superior],
            **self.params,
        }


def smooth_noise(rng: np.random.Generator, cells: int, width: int, height: int) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise of about ``cells`` blobs across, float32 (h, w)."""
    gw = max(2, cells)
    gh = max(2, round(cells * height / width))
    grid = rng.standard_normal((gh + 3, gw + 3)).astype(np.float32)
    big = cv2.resize(
        grid, (width + 3 * width // gw, height + 3 * height // gh), interpolation=cv2.INTER_CUBIC
    )
    ox, oy = width // gw, height // gh
    return big[oy : oy + height, ox : ox + width]


def _walk(
    rng: np.random.Generator,
    start: np.ndarray,
    heading: float,
    length: float,
    curvature: float,
    curve_length: float,
    jitter: float,
    step: float,
) -> tuple[np.ndarray, np.ndarray]:
    n = max(2, int(length / step))
    turn = np.full(n, curvature * step)
    turn[int(curve_length / step) :] *= -0.15  # past the arc the vessel straightens, outwards
    turn += rng.normal(0.0, jitter, n)
    headings = heading + np.cumsum(turn)
    steps = step * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    pts = np.vstack([start, start + np.cumsum(steps, axis=0)])
    return pts, np.concatenate([[heading], headings])


def _grow_tree(
    rng: np.random.Generator,
    frame: Frame,
    disc_ab: np.ndarray,
    fovea_ab: np.ndarray,
    dfd: float,
    vein_w: float,
) -> list[Vessel]:
    """Vessel arcades from the disc with recursive branching (retina frame, then pixels)."""
    step = 0.012
    fovea_free = rng.uniform(0.10, 0.16) * dfd
    specs: list[tuple] = []  # (start, heading, length, curvature, curve_len, width, kind, depth)
    for sign in (1.0, -1.0):  # superior, inferior temporal arcades
        theta = math.radians(rng.uniform(88, 112))
        kappa = 1.0 / (rng.uniform(0.75, 1.0) * dfd)
        clen = rng.uniform(0.95, 1.3) * dfd
        for kind, wf in (("vein", 1.0), ("artery", rng.uniform(0.68, 0.8))):
            t = theta + math.radians(rng.uniform(-14, 14))
            specs.append(
                (
                    disc_ab + rng.normal(0, 0.03 * dfd, 2),
                    sign * t,
                    rng.uniform(1.5, 1.9),
                    sign * kappa * rng.uniform(0.9, 1.1),
                    clen,
                    vein_w * wf * rng.uniform(0.92, 1.08),
                    kind,
                    0,
                )
            )
        theta = math.radians(rng.uniform(35, 75))  # nasal arcades
        for kind, wf in (("vein", 0.85), ("artery", 0.62)):
            t = theta + math.radians(rng.uniform(-15, 15))
            specs.append(
                (
                    disc_ab + rng.normal(0, 0.03 * dfd, 2),
                    sign * t,
                    rng.uniform(0.7, 1.0),
                    -sign * rng.uniform(0.2, 1.2),
                    1.0,
                    vein_w * wf * rng.uniform(0.9, 1.1),
                    kind,
                    0,
                )
            )
    for _ in range(rng.integers(1, 4)):  # small macular and nasal vessels straight from the disc
        temporal = rng.random() < 0.6
        t = (math.pi if temporal else 0.0) + math.radians(rng.uniform(-25, 25))
        specs.append(
            (
                disc_ab + rng.normal(0, 0.03 * dfd, 2),
                t,
                rng.uniform(0.35, 0.6),
                rng.normal(0, 1.0),
                1.0,
                vein_w * rng.uniform(0.35, 0.5),
                "artery" if rng.random() < 0.5 else "vein",
                1,
            )
        )

    vessels: list[Vessel] = []
    fovea_ab = np.asarray(fovea_ab)
    min_w = 0.0011
    while specs:
        start, heading, length, curv, clen, w0, kind, depth = specs.pop()
        pts, heads = _walk(
            rng,
            np.asarray(start, dtype=float),
            heading,
            length,
            curv,
            clen,
            0.045 if depth == 0 else 0.07,
            step,
        )
        n_plan = len(pts)
        widths = w0 * (1.0 - 0.55 * np.arange(n_plan) / n_plan)
        ok = (
            (np.hypot(pts[:, 0], pts[:, 1]) < 1.03)
            & (np.hypot(*(pts - fovea_ab).T) > fovea_free)
            & (widths > min_w)
        )
        stop = n_plan if ok.all() else int(np.argmin(ok))
        if stop < 2:
            continue
        pts, heads, widths = pts[:stop], heads[:stop], widths[:stop]
        vessels.append(
            Vessel(frame.to_image(pts[:, 0], pts[:, 1]), widths * frame.radius, kind, depth)
        )
        if depth >= 3:
            continue
        p_branch = 0.045 if depth == 0 else 0.03
        first = max(3, int(0.08 * stop))
        for i in np.nonzero(rng.random(stop) < p_branch)[0]:
            if i < first or widths[i] < 3 * min_w:
                continue
            side = 1.0 if rng.random() < 0.5 else -1.0
            specs.append(
                (
                    pts[i],
                    heads[i] + side * rng.uniform(0.45, 1.1),
                    rng.uniform(0.15, 0.5) * 0.8**depth,
                    rng.normal(0, 0.9),
                    1.0,
                    widths[i] * rng.uniform(0.5, 0.75),
                    kind,
                    depth + 1,
                )
            )
    vessels.sort(key=lambda v: float(v.widths[0]))  # thin first, trunks drawn over them
    return vessels


def draw_vessel(
    canvas: np.ndarray,
    points: np.ndarray,
    widths: np.ndarray,
    ref_width: float,
    contrast: float = 1.0,
) -> None:
    """Draw a tapering vessel into an opacity canvas (anti-aliased, sub-pixel positions)."""
    thick = np.maximum(1, np.rint(widths)).astype(int)
    strength = np.minimum(1.0, widths) * (0.6 + 0.4 * np.minimum(1.0, widths / ref_width))
    value = np.clip(np.rint(255 * contrast * strength / 16) * 16, 16, 255).astype(int)
    pts = np.rint(points * SCALE).astype(np.int32)
    key = thick * 1000 + value
    breaks = np.nonzero(np.diff(key))[0] + 1
    bounds = np.concatenate([[0], breaks, [len(pts) - 1]])
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        if e <= s:
            continue
        cv2.polylines(
            canvas, [pts[s : e + 1]], False, int(value[s]), int(thick[s]), cv2.LINE_AA, SHIFT
        )


def build_anatomy(rng: np.random.Generator, frame: Frame) -> Anatomy:
    """Draw the structure of a healthy eye (positions, vessel tree) for ``frame``."""
    dfd = rng.uniform(0.55, 0.74)  # disc-fovea distance, units of the radius (45-50 deg fields)
    fovea_a = rng.uniform(-0.28, 0.0)
    disc_ab = np.array([fovea_a + dfd, rng.uniform(-0.03, 0.08)])
    fovea_ab = np.array([fovea_a, disc_ab[1] - rng.uniform(0.0, 0.12) * dfd])
    disc_r = dfd * rng.uniform(0.16, 0.21)
    vein_w = rng.uniform(0.015, 0.02)
    vessels = _grow_tree(rng, frame, disc_ab, fovea_ab, dfd, vein_w)
    vein = np.zeros((frame.height, frame.width), np.uint8)
    artery = np.zeros_like(vein)
    ref = vein_w * frame.radius
    for v in vessels:
        draw_vessel(vein if v.kind == "vein" else artery, v.points, v.widths, ref)
    params = {
        "disc_fovea_distance": round(dfd * frame.radius, 2),
        "pigment": round(float(rng.uniform(0, 1)), 3),
        "tessellation": round(float(rng.uniform(0.06, 0.2)) if rng.random() < 0.3 else 0.0, 3),
        "macula_depth": round(float(rng.uniform(0.18, 0.4)), 3),
        "cup_ratio": round(float(rng.uniform(0.22, 0.6)), 3),
        "foveal_reflex": bool(rng.random() < 0.5),
        "peripapillary_atrophy": bool(rng.random() < 0.25),
        "nerve_fibre_sheen": round(float(rng.uniform(0, 0.08)), 3),
        "vessel_tone": round(float(rng.uniform(0.85, 1.15)), 3),
    }
    return Anatomy(
        frame=frame,
        disc=frame.to_image(*disc_ab),
        disc_radius=float(disc_r * frame.radius),
        fovea=frame.to_image(*fovea_ab),
        vessels=vessels,
        vein_canvas=vein,
        artery_canvas=artery,
        params=params,
        background_seed=int(rng.integers(0, 2**31)),
        sheen=_nerve_fibre_sheen(vein, artery, frame, params["nerve_fibre_sheen"]),
    )


def _nerve_fibre_sheen(
    vein: np.ndarray, artery: np.ndarray, frame: Frame, strength: float
) -> np.ndarray | None:
    """Young retinas reflect light along the big vessel arcades: a soft glow beside them.

    Built from the healthy vessel tree only (before any lesion), at low resolution.
    """
    if strength <= 0.01:
        return None
    lw = min(frame.width, 256)
    lh = max(8, round(lw * frame.height / frame.width))
    small = (
        cv2.resize(np.maximum(vein, artery), (lw, lh), interpolation=cv2.INTER_AREA).astype(
            np.float32
        )
        / 255
    )
    glow = cv2.GaussianBlur(small, (0, 0), max(1.0, 0.03 * frame.radius * lw / frame.width))
    return (strength * 4 * glow).astype(np.float32)


def _ellipse_alpha(
    shape: tuple[int, ...],
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle_deg: float,
    blur_px: float,
) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.ellipse(
        canvas,
        (int(round(centre[0] * SCALE)), int(round(centre[1] * SCALE))),
        (max(1, int(round(axes[0] * SCALE))), max(1, int(round(axes[1] * SCALE)))),
        angle_deg,
        0,
        360,
        255,
        -1,
        cv2.LINE_AA,
        SHIFT,
    )
    out: np.ndarray = canvas.astype(np.float32) * (1 / 255)
    if blur_px > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), blur_px)
    return out


def _choroidal_gaps(
    rng: np.random.Generator, anat: Anatomy, lw: int, lh: int, s: float
) -> np.ndarray:
    """Tessellation: dark pigmented gaps between broad choroidal vessels, strongest peripherally."""
    R = anat.frame.radius * s
    canvas = np.zeros((lh, lw), np.uint8)
    centre = anat.fovea * s
    for _ in range(int(rng.integers(40, 70))):
        ang = rng.uniform(0, 2 * math.pi)
        start = centre + R * rng.uniform(0.05, 0.6) * np.array([math.cos(ang), math.sin(ang)])
        n = 40
        h = ang + rng.normal(0, 0.4) + np.cumsum(rng.normal(0, 0.12, n))
        pts = start + np.cumsum(0.03 * R * np.stack([np.cos(h), np.sin(h)], 1), 0)
        width = max(1, int(round(rng.uniform(0.025, 0.05) * R)))
        cv2.polylines(
            canvas, [np.rint(pts * SCALE).astype(np.int32)], False, 255, width, cv2.LINE_AA, SHIFT
        )
    vessels = cv2.GaussianBlur(canvas, (0, 0), max(0.8, 0.008 * R)).astype(np.float32) / 255
    xs, ys = pixel_grid(lw, lh)
    away = np.clip(np.hypot(xs - centre[0], ys - centre[1]) / (0.9 * R), 0, 1) ** 1.5
    return (1 - vessels) * away


def render_background(anat: Anatomy) -> np.ndarray:
    """Reflectance image (float32 h x w x 3, ~0..1) of fundus, disc and macula, no vessels yet."""
    f = anat.frame
    p = anat.params
    w, h = f.width, f.height
    rng = np.random.default_rng(anat.background_seed)
    pig = p["pigment"]
    base = np.array([0.93 - 0.22 * pig, 0.47 - 0.20 * pig, 0.22 - 0.10 * pig], np.float32)
    base *= rng.uniform(0.95, 1.05, 3).astype(np.float32)
    # all texture is smooth: build it at low resolution and upsample once
    lw = min(w, 256)
    lh = max(8, round(lw * h / w))
    s = lw / w
    tex: np.ndarray = (
        0.07 * smooth_noise(rng, 5, lw, lh)
        + 0.035 * smooth_noise(rng, 18, lw, lh)
        + 0.02 * smooth_noise(rng, 70, lw, lh)
    )
    if p["tessellation"] > 0:
        tex -= p["tessellation"] * _choroidal_gaps(rng, anat, lw, lh, s)
    if anat.sheen is not None and anat.sheen.shape == tex.shape:
        tex += anat.sheen
    # macula: darker (xanthophyll, RPE) with a darker fovea
    dfd = anat.disc_fovea_distance * s
    xs, ys = pixel_grid(lw, lh)
    d2 = (xs - anat.fovea[0] * s) ** 2 + (ys - anat.fovea[1] * s) ** 2
    tex -= np.exp(-d2 / (2 * (0.22 * dfd) ** 2)) * p["macula_depth"] + 0.12 * np.exp(
        -d2 / (2 * (0.05 * dfd) ** 2)
    )
    if lw != w:
        tex = cv2.resize(tex, (w, h), interpolation=cv2.INTER_LINEAR)
    weights = (0.55, 1.0, 0.92)
    img: np.ndarray = cv2.merge(
        [tex * np.float32(base[c] * weights[c]) + np.float32(base[c]) for c in range(3)]
    )
    if p["foveal_reflex"]:
        rr = max(0.6, 0.012 * f.radius)
        m = int(4 * rr) + 2
        fx, fy = anat.fovea
        xa, ya = max(0, int(fx) - m), max(0, int(fy) - m)
        xb, yb = min(w, int(fx) + m), min(h, int(fy) + m)
        if xa < xb and ya < yb:
            spot: np.ndarray = np.zeros((yb - ya, xb - xa), np.uint8)
            cv2.circle(
                spot,
                (int((fx - xa) * SCALE), int((fy - ya) * SCALE)),
                int(rr * SCALE),
                255,
                -1,
                cv2.LINE_AA,
                SHIFT,
            )
            spot = cv2.GaussianBlur(spot, (0, 0), rr).astype(np.float32) * np.float32(0.3 / 255)
            img[ya:yb, xa:xb] += spot[..., None]
    _draw_disc(img, anat, rng)
    return img


def _draw_disc(img: np.ndarray, anat: Anatomy, rng: np.random.Generator) -> None:
    f = anat.frame
    p = anat.params
    r = anat.disc_radius
    cx, cy = anat.disc
    m = int(2.2 * r) + 3
    xa, xb = max(0, int(cx) - m), min(f.width, int(cx) + m)
    ya, yb = max(0, int(cy) - m), min(f.height, int(cy) + m)
    if xa >= xb or ya >= yb:
        return
    roi = img[ya:yb, xa:xb]
    shape = roi.shape[:2]
    nasal, superior = f.axes
    angle = math.degrees(math.atan2(superior[1], superior[0]))
    centre = (cx - xa, cy - ya)
    axes = (r * rng.uniform(1.0, 1.12), r * rng.uniform(0.9, 1.0))
    glow = _ellipse_alpha(shape, centre, (axes[0] * 1.5, axes[1] * 1.5), angle, 0.4 * r) * 0.18
    roi *= 1 + glow[..., None] * np.array([0.3, 0.8, 0.6], np.float32)
    disc = _ellipse_alpha(shape, centre, axes, angle, 0.05 * r + 0.3)
    rim = np.array(
        [1.0, rng.uniform(0.72, 0.88), rng.uniform(0.38, 0.52)], np.float32
    ) * rng.uniform(1.0, 1.12)
    if p["peripapillary_atrophy"]:
        off = -nasal * 0.35 * r
        ppa = _ellipse_alpha(
            shape, (centre[0] + off[0], centre[1] + off[1]), (r * 1.25, r * 1.05), angle, 0.15 * r
        )
        ppa = np.clip(ppa - disc, 0, 1) * 0.55
        roi[:] = roi * (1 - ppa[..., None]) + ppa[..., None] * np.array(
            [0.95, 0.72, 0.45], np.float32
        )
    roi[:] = roi * (1 - disc[..., None]) + disc[..., None] * rim
    cr = p["cup_ratio"] * r
    off = -nasal * 0.12 * r
    cup = _ellipse_alpha(
        shape, (centre[0] + off[0], centre[1] + off[1]), (cr * 1.1, cr), angle, 0.3 * cr
    )
    cup_col = np.array([1.0, 0.93, 0.7], np.float32) * rng.uniform(1.05, 1.2)
    roi[:] = roi * (1 - cup[..., None]) + cup[..., None] * cup_col


VEIN_ABSORBANCE = np.array([0.5, 1.15, 1.05], np.float32)
ARTERY_ABSORBANCE = np.array([0.2, 0.55, 0.5], np.float32)


def composite_vessels(img: np.ndarray, anat: Anatomy) -> None:
    """Darken ``img`` in place where vessels run (Beer-Lambert style absorbance per channel)."""
    sigma = max(0.45, 0.0022 * anat.frame.radius)
    tone = np.float32(anat.params["vessel_tone"])
    for canvas, k in ((anat.vein_canvas, VEIN_ABSORBANCE), (anat.artery_canvas, ARTERY_ABSORBANCE)):
        absorb(img, cv2.GaussianBlur(canvas, (0, 0), sigma), k * tone)


_LEVELS = np.arange(256, dtype=np.float32)[:, None] / 255


def absorb(img: np.ndarray, alpha: np.ndarray, absorbance: np.ndarray) -> None:
    """``img *= exp(-alpha * absorbance)`` in place, with ``alpha`` a uint8 opacity map."""
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0 or h == 0:
        return
    lut = np.exp(-_LEVELS * np.asarray(absorbance, np.float32)[None, :]).reshape(1, 256, 3)
    a = alpha[y : y + h, x : x + w]
    factor = cv2.LUT(cv2.merge([a, a, a]), lut)
    roi = img[y : y + h, x : x + w]
    cv2.multiply(roi, factor, dst=roi)
