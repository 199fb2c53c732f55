"""The camera: framing, exposure, colour, blur, noise and compression (never grade-dependent).

Every parameter comes from the *acquisition* random stream, which knows nothing of the grade,
so none of these can serve a model as a shortcut. Ungradable photographs ("dark",
"overexposed", "blurred", "occluded") degrade the same pipeline further.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from retinascreen.synthetic.frame import Frame, fov_alpha, pixel_grid

UNGRADABLE_KINDS: tuple[str, ...] = ("dark", "overexposed", "blurred", "occluded")
ASPECTS = {
    "1:1": (1.0, 0.55),
    "4:3": (0.75, 0.3),
    "3:2": (2 / 3, 0.15),
}  # height/width, probability


def draw_acquisition(rng: np.random.Generator, size: int) -> dict:
    """Framing and camera parameters for one photograph of width ``size`` (JSON-friendly)."""
    names = list(ASPECTS)
    aspect = names[int(rng.choice(len(names), p=[ASPECTS[n][1] for n in names]))]
    width, height = size, max(16, int(round(size * ASPECTS[aspect][0])))
    clipped = aspect != "1:1" and rng.random() < 0.4
    if clipped:  # EyePACS-like: the circle cut at top and bottom
        radius = min(height / 2 * rng.uniform(1.04, 1.2), 0.485 * width)
    else:
        radius = min(width, height) / 2 * rng.uniform(0.86, 0.98)
    temperature = float(rng.normal(0, 1))
    return {
        "width": width,
        "height": height,
        "aspect": aspect,
        "clipped": bool(clipped and radius > height / 2),
        "radius": round(float(radius), 3),
        "cx": round(float(width / 2 + rng.normal(0, 0.012 * width)), 3),
        "cy": round(float(height / 2 + rng.normal(0, 0.012 * height)), 3),
        "rotation_deg": round(float(rng.uniform(-12, 12)), 3),
        "exposure": round(float(np.clip(math.exp(rng.normal(0, 0.15)), 0.7, 1.45)), 4),
        "gamma": round(float(rng.uniform(0.8, 1.25)), 4),
        "white_balance": [
            round(1 + 0.06 * temperature, 4),
            round(float(1 + rng.normal(0, 0.04)), 4),
            round(1 - 0.14 * temperature, 4),
        ],
        "vignetting": round(float(rng.uniform(0.25, 0.6)), 4),
        "vignetting_power": round(float(rng.uniform(1.8, 3.2)), 4),
        "illumination_tilt": round(float(rng.uniform(0, 0.2)), 4),
        "illumination_angle": round(float(rng.uniform(0, 2 * math.pi)), 4),
        "edge_haze": round(float(rng.uniform(0.05, 0.3)) if rng.random() < 0.35 else 0.0, 4),
        "edge_haze_angle": round(float(rng.uniform(0, 2 * math.pi)), 4),
        "dust_spots": int(rng.integers(1, 5)) if rng.random() < 0.15 else 0,
        "blur_sigma_px": round(
            float(rng.uniform(0, 0.9) if rng.random() < 0.8 else rng.uniform(0.9, 1.6))
            * size
            / 512,
            4,
        ),
        "noise_sigma": round(float(rng.uniform(0.003, 0.02)), 5),
        "jpeg_quality": int(rng.integers(60, 98)),
        "effects_seed": int(rng.integers(0, 2**31)),
    }


def make_frame(acq: dict, eye: str) -> Frame:
    """The :class:`Frame` of an acquisition for ``eye``."""
    return Frame(
        acq["width"],
        acq["height"],
        acq["cx"],
        acq["cy"],
        acq["radius"],
        math.radians(acq["rotation_deg"]),
        eye,
    )


def draw_ungradable(rng: np.random.Generator, kind: str | None) -> dict:
    """Parameters of the degradation that makes a photograph ungradable (empty for None)."""
    if kind is None:
        return {}
    if kind not in UNGRADABLE_KINDS:
        raise ValueError(
            f"unknown ungradable kind {kind!r} (expected one of {', '.join(UNGRADABLE_KINDS)})"
        )
    if kind == "dark":
        return {"kind": kind, "exposure": float(rng.uniform(0.04, 0.12))}
    if kind == "overexposed":
        return {
            "kind": kind,
            "exposure": float(rng.uniform(2.5, 4.0)),
            "haze": float(rng.uniform(0.55, 0.8)),
        }
    if kind == "blurred":
        return {
            "kind": kind,
            "blur_radius_fraction": float(rng.uniform(0.045, 0.07)),
            "noise": 0.25,
        }
    return {
        "kind": kind,
        "top": bool(rng.random() < 0.7),
        "cover": float(rng.uniform(0.6, 0.85)),
        "shade": float(rng.uniform(0.02, 0.08)),
        "lashes": int(rng.integers(8, 22)),
        "seed": int(rng.integers(0, 2**31)),
    }


def _smooth_fields(
    frame: Frame, acq: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Illumination (vignetting, tilt, dust) and edge haze: smooth, so built at 1/8 scale."""
    lw, lh = max(16, frame.width // 8), max(16, frame.height // 8)
    sx, sy = frame.width / lw, frame.height / lh
    xs, ys = pixel_grid(lw, lh)
    px, py = (xs + 0.5) * sx - 0.5, (ys + 0.5) * sy - 0.5
    dx, dy = (px - frame.cx) / frame.radius, (py - frame.cy) / frame.radius
    r = np.sqrt(dx * dx + dy * dy)
    illum = 1 - np.float32(acq["vignetting"]) * np.minimum(r, 1.2) ** np.float32(
        acq["vignetting_power"]
    )
    a = acq["illumination_angle"]
    illum *= 1 + np.float32(acq["illumination_tilt"]) * (
        dx * np.float32(math.cos(a)) + dy * np.float32(math.sin(a))
    )
    for _ in range(acq["dust_spots"]):  # out-of-focus dust on the optics: faint dark blobs
        cx, cy = rng.uniform(-0.7, 0.7, 2)
        rad = rng.uniform(0.02, 0.05)
        illum *= 1 - rng.uniform(0.06, 0.15) * np.exp(
            -((dx - cx) ** 2 + (dy - cy) ** 2) / (rad * rad)
        )
    illum = cv2.resize(
        np.maximum(illum, 0.15), (frame.width, frame.height), interpolation=cv2.INTER_LINEAR
    )
    haze = None
    if acq["edge_haze"] > 0:
        ang = np.arctan2(dy, dx)
        haze = (
            acq["edge_haze"]
            * np.clip((r - 0.65) / 0.35, 0, 1) ** 2
            * (0.5 + 0.5 * np.cos(ang - acq["edge_haze_angle"]))
        )
        haze = cv2.resize(
            haze.astype(np.float32), (frame.width, frame.height), interpolation=cv2.INTER_LINEAR
        )
    return illum, haze


_NOISE_POOL: np.ndarray | None = None
_NOISE_OFFSETS = 1 << 22
_NOISE_MAX = 1024 * 1024 * 3  # the largest image


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` standard-normal values from a fixed pool at a random offset (fast sensor noise).

    Pool size and offsets are constants, so the noise of an image never depends on what the
    process generated before.
    """
    global _NOISE_POOL
    if _NOISE_POOL is None:
        _NOISE_POOL = np.random.default_rng(12345).standard_normal(
            _NOISE_OFFSETS + _NOISE_MAX, dtype=np.float32
        )
    start = int(rng.integers(0, _NOISE_OFFSETS))
    return _NOISE_POOL[start : start + n]


def _occlude(img: np.ndarray, frame: Frame, ung: dict) -> None:
    """Eyelid shadow over a large part of the field, with eyelashes along its edge."""
    xs, ys = pixel_grid(frame.width, frame.height)
    R = frame.radius
    sign = 1.0 if ung["top"] else -1.0
    edge = frame.cy + sign * (ung["cover"] * 2 - 1) * R  # y of the lid margin
    curve = 0.35 * ((xs - frame.cx) / R) ** 2 * R  # lid margin bows towards the centre
    depth = (sign * (edge - curve * sign - ys)) / (0.1 * R)
    shadow = np.clip(depth + 0.5, 0, 1)
    factor = 1 - (1 - ung["shade"]) * shadow
    rng = np.random.default_rng(ung["seed"])
    lashes = np.zeros(img.shape[:2], np.uint8)
    for _ in range(ung["lashes"]):
        x = frame.cx + rng.uniform(-0.8, 0.8) * R
        y = edge - sign * 0.35 * ((x - frame.cx) / R) ** 2 * R
        length = rng.uniform(0.15, 0.45) * R
        ang = -sign * math.pi / 2 + rng.uniform(-0.5, 0.5)
        pts = [
            (
                x + t * length * math.cos(ang + 0.6 * t),
                y - sign * 0 + t * length * math.sin(ang + 0.6 * t),
            )
            for t in np.linspace(0, 1, 12)
        ]
        cv2.polylines(
            lashes,
            [np.rint(np.array(pts) * 8).astype(np.int32)],
            False,
            255,
            max(1, int(0.012 * R)),
            cv2.LINE_AA,
            3,
        )
    lash = cv2.GaussianBlur(lashes, (0, 0), max(0.8, 0.006 * R)).astype(np.float32) / 255
    factor *= 1 - 0.85 * lash
    img *= factor[..., None]


def apply_acquisition(
    reflectance: np.ndarray, frame: Frame, acq: dict, ung: dict, fov: np.ndarray | None = None
) -> np.ndarray:
    """Photograph a reflectance image: light, colour, optics, sensor -> uint8 RGB (h, w, 3).

    ``reflectance`` (float32, h x w x 3) is modified in place; ``fov`` is the soft
    field-of-view mask (computed when not given).
    """
    img = reflectance
    rng = np.random.default_rng(acq["effects_seed"])
    illum, haze = _smooth_fields(frame, acq, rng)
    fov = fov_alpha(frame) if fov is None else fov
    gain = np.array(acq["white_balance"], np.float32) * np.float32(
        acq["exposure"] * ung.get("exposure", 1.0)
    )
    sigma = acq["blur_sigma_px"]
    if "blur_radius_fraction" in ung:
        sigma = ung["blur_radius_fraction"] * frame.radius
    simple = haze is None and not ung  # the common case: fold everything into one multiply
    if simple:
        illum = illum * fov if sigma <= 2 else illum
        g = gain * 255
        cv2.multiply(img, cv2.merge([illum * g[0], illum * g[1], illum * g[2]]), dst=img)
    else:
        img *= illum[..., None]
        if haze is not None:
            img += haze[..., None] * np.array([0.75, 0.75, 0.85], np.float32)
        img *= gain
        if "haze" in ung:
            h = np.float32(ung["haze"])
            img *= 1 - h
            img += h * np.array([1.0, 0.97, 0.9], np.float32)
        if ung.get("kind") == "occluded":
            _occlude(img, frame, ung)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if not simple:
        img *= (fov * 255)[..., None]
    elif sigma > 2:
        img *= fov[..., None]
    noise = _noise(rng, img.size).reshape(img.shape)
    img = cv2.scaleAdd(noise, float(acq["noise_sigma"] * ung.get("noise", 1.0) * 255), img)
    # OpenCV takes a scalar second operand; its stubs only list arrays.
    linear = cv2.convertScaleAbs(cv2.max(img, 0.0))  # type: ignore[call-overload]
    lut = np.clip(np.rint((np.arange(256) / 255) ** acq["gamma"] * 255), 0, 255).astype(np.uint8)
    return cv2.LUT(linear, lut)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG at ``quality`` (what a camera or a web upload does)."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:  # pragma: no cover - OpenCV always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:  # pragma: no cover - OpenCV decodes what it has just encoded
        raise RuntimeError("JPEG decoding failed")
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
