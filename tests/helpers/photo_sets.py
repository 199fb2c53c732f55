"""Real fundus photographs, the layouts a clinic's files come in, degraded copies, non-fundi.

Shared by ``bench/quality.py`` (the figures) and the quality tests. Real photos come from
``../shared/data`` (never copied into the repository) and ``skimage.data.retina``.
Degradations are the ones a grader rejects, each with its strength stated relative to the
fundus diameter so that it means the same at every resolution.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = Path(os.environ.get("RETINASCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))

EYEQ_LABELS = SHARED_DATA / "eyeq" / "eyepacs-256-quality.csv"

Photo = tuple[str, np.ndarray]


def shared_data_available() -> bool:
    return (SHARED_DATA / "drive").is_dir() and (SHARED_DATA / "eyepacs-256").is_dir()


def require_shared_data() -> None:
    """Skip the test, saying why, when ``../shared/data`` is absent; fail instead in CI."""
    import os

    import pytest

    if not shared_data_available():
        message = f"real photographs not found in {SHARED_DATA}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must have them)")
        pytest.skip(message)


def _read(path: Path) -> np.ndarray:
    from retinascreen.data.images import load_image

    return load_image(path)


def drive_photos() -> Iterator[Photo]:
    """The 40 raw DRIVE photographs (565 x 584, all gradable)."""
    for path in sorted(SHARED_DATA.glob("drive/*/images/*.png")):
        yield path.name, _read(path)


def eyepacs_photos(limit: int | None = None, every: int = 1) -> Iterator[Photo]:
    """The EyePACS photos cropped and enhanced to 256 px by a third party."""
    paths = sorted((SHARED_DATA / "eyepacs-256" / "train").glob("*.jpeg"))[::every]
    for path in paths[:limit]:
        yield path.name, _read(path)


def eyeq_quality() -> dict[str, str]:
    """EyeQ's graders' label (``Good`` / ``Usable`` / ``Reject``) per EyePACS-256 photo stem."""
    import csv

    with EYEQ_LABELS.open(newline="", encoding="utf-8") as handle:
        return {row["image"]: row["quality"] for row in csv.DictReader(handle)}


def eyepacs_photo(stem: str) -> np.ndarray:
    """One photo of the EyePACS 256 px set by its name (``10007_left``)."""
    return _read(SHARED_DATA / "eyepacs-256" / "train" / f"{stem}.jpeg")


def skimage_retina() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.retina()[:, :, :3])


# ------------------------------------------------------------------- layouts of real photos


def resize_long_side(rgb: np.ndarray, side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    method = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=method
    )


def camera_frame(
    rgb: np.ndarray,
    *,
    width: int = 2592,
    height: int = 1944,
    fill: float = 0.92,
    clip: float = 0.0,
    background: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """``rgb`` (a fundus photo) placed as a raw camera frame: black (or ``background``) borders.

    ``fill``: the field's diameter / frame height (its radius is ``fill * height / 2``, or that
    divided by ``1 - 2 * clip``); ``clip``: fraction of the fundus diameter cut
    off at the top and at the bottom (EyePACS-style); uneven exposure and JPEG-like noise.
    """
    from retinascreen.data.fundus import crop_fundus

    rng = np.random.default_rng(seed)
    diameter = round(fill * height / (1 - 2 * clip)) if clip else round(fill * height)
    # The photo's own field only (crop_fundus pads its square by 2 %), on the new backdrop.
    side = round(diameter * 1.02)
    square = crop_fundus(rgb, side)
    off = (side - diameter) // 2
    fundus = square[off : off + diameter, off : off + diameter]
    yy, xx = np.mgrid[:diameter, :diameter].astype(np.float32)
    r = np.hypot(xx - diameter / 2, yy - diameter / 2) / (diameter / 2)
    field = r <= 0.995
    gain = 1.0 + 0.25 * (xx / diameter - 0.5)  # uneven exposure across the field
    fundus = np.clip(fundus.astype(np.float32) * gain[..., None], 0, 255)
    frame = np.full((height, width, 3), background, np.float32)
    x0, y0 = (width - diameter) // 2, (height - diameter) // 2
    fy0, fy1 = max(0, -y0), diameter - max(0, y0 + diameter - height)
    region = frame[max(0, y0) : max(0, y0) + fy1 - fy0, x0 : x0 + diameter]
    patch, inside = fundus[fy0:fy1], field[fy0:fy1]
    region[inside] = patch[inside]
    frame += rng.normal(0, 2.0, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int = 70) -> np.ndarray:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# The raw-frame layouts: camera_frame's arguments, and the JPEG quality they are saved at.
FRAME_LAYOUTS: dict[str, tuple[dict[str, Any], int | None]] = {
    "raw-5mp": ({"width": 2592, "height": 1944}, None),
    "raw-clipped": ({"width": 2048, "height": 1536, "clip": 0.08}, 85),
    "narrow-border": ({"width": 1600, "height": 1560, "fill": 0.99, "seed": 1}, None),
    "grey-background": ({"width": 1200, "height": 1000, "background": 128, "seed": 2}, None),
    "white-background": ({"width": 1200, "height": 1000, "background": 245, "seed": 3}, None),
    "huge-5000": ({"width": 5000, "height": 4000, "fill": 0.9, "seed": 4}, None),
}


def frame_field_radius(layout: str) -> float:
    """The radius in pixels of the field that :data:`FRAME_LAYOUTS` ``layout`` draws."""
    args = FRAME_LAYOUTS[layout][0]
    return args.get("fill", 0.92) * args["height"] / 2 / (1 - 2 * args.get("clip", 0.0))


def real_layouts(rgb: np.ndarray, name: str) -> Iterator[Photo]:
    """One real photo in the layouts users upload: raw frames, clipped, small, huge, grey."""
    for layout, (args, quality) in FRAME_LAYOUTS.items():
        frame = camera_frame(rgb, **args)
        yield f"{name}/{layout}", jpeg(frame, quality) if quality else frame
    yield f"{name}/small-200", resize_long_side(rgb, 200)
    yield f"{name}/jpeg-q40", jpeg(rgb, 40)


# ------------------------------------------------------------------------- degradations


def _diameter(rgb: np.ndarray) -> float:
    from retinascreen.data.fundus import find_disc

    disc = find_disc(rgb)
    return 2 * disc.radius if disc else float(min(rgb.shape[:2]))


def defocus(rgb: np.ndarray, strength: float = 0.02) -> np.ndarray:
    """Defocus: a disk (pill-box) blur of radius ``strength`` x the fundus diameter."""
    radius = max(1, round(strength * _diameter(rgb)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    kernel = kernel.astype(np.float32) / kernel.sum()
    return cv2.filter2D(rgb, -1, kernel)


def under_exposed(rgb: np.ndarray, gain: float = 0.12) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def over_exposed(rgb: np.ndarray, gain: float = 3.0) -> np.ndarray:
    mask = rgb.max(axis=2, keepdims=True) > 20  # the background stays dark
    out = np.where(mask, np.clip(rgb.astype(np.float32) * gain + 40, 0, 255), rgb)
    return out.astype(np.uint8)


def hazy(rgb: np.ndarray, amount: float = 0.65) -> np.ndarray:
    """Lens haze / flare: a milky veil over the whole field of view."""
    from retinascreen.data.fundus import find_disc

    h, w = rgb.shape[:2]
    disc = find_disc(rgb)
    circle = np.zeros((h, w), np.uint8)
    if disc is not None:
        cv2.circle(circle, (round(disc.cx), round(disc.cy)), round(disc.radius), 1, -1)
    else:
        circle[:] = 1
    mask = circle[..., None].astype(np.float32)
    veil = np.full_like(rgb, 225, dtype=np.float32)
    out = rgb.astype(np.float32) * (1 - amount * mask) + veil * amount * mask
    return np.clip(out, 0, 255).astype(np.uint8)


def eyelid_shadow(rgb: np.ndarray, covered: float = 0.5) -> np.ndarray:
    """The top ``covered`` of the frame in deep shadow (an eyelid or lashes), soft edged."""
    h = rgb.shape[0]
    yy = np.arange(h, dtype=np.float32)[:, None, None]
    edge = covered * h
    shade = 0.06 + 0.94 * np.clip((yy - edge) / (0.04 * h) + 0.5, 0, 1)
    return np.clip(rgb.astype(np.float32) * shade, 0, 255).astype(np.uint8)


DEGRADATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "defocus 2%": (lambda rgb: defocus(rgb, 0.02), "blurred"),
    "defocus 3%": (lambda rgb: defocus(rgb, 0.03), "blurred"),
    "under-exposed x0.12": (under_exposed, "too dark"),
    "over-exposed x3": (over_exposed, "over-exposed"),
    "haze 75%": (lambda rgb: hazy(rgb, 0.75), "low contrast"),
    "eyelid shadow 50%": (eyelid_shadow, "too dark"),
}


def degraded(photos: Iterator[Photo]) -> Iterator[tuple[str, np.ndarray, str]]:
    """Every degradation of every photo: (name, degraded RGB, the reason a grader gives)."""
    for name, rgb in photos:
        for kind, (make, reason) in DEGRADATIONS.items():
            yield f"{name}/{kind}", make(rgb), reason


# ------------------------------------------------------------------------- not a fundus


def non_fundus_images() -> Iterator[Photo]:
    """Faces, documents, a screenshot, a white wall, round objects on black, noise, cats."""
    from skimage import data

    from tests.helpers.drawing import draw_face, noise

    rng = np.random.default_rng(0)
    yield "face (astronaut)", data.astronaut()
    yield "face (drawn, dark background)", draw_face(512, dark_background=True)
    yield "cat", data.chelsea()
    yield "coffee cup", data.coffee()
    page = data.page()
    yield "document (page)", np.dstack([page] * 3)
    text = data.text()
    yield "document (text)", np.dstack([text] * 3)
    screen = np.full((900, 1440, 3), 242, np.uint8)
    screen[:60] = (40, 60, 90)
    for i in range(12):
        cv2.rectangle(
            screen, (80, 100 + 60 * i), (700 + 30 * (i % 5), 140 + 60 * i), (200, 200, 210), -1
        )
        cv2.putText(
            screen,
            f"Patient list row {i}",
            (90, 130 + 60 * i),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.8,
            (20, 20, 20),
            2,
        )
    yield "screenshot", screen
    wall = np.clip(rng.normal(232, 3, (1200, 1600, 3)), 0, 255).astype(np.uint8)
    yield "white wall", wall
    for label, colour in (
        ("orange ball on black", (235, 120, 30)),
        ("grey ball on black", (150, 150, 150)),
    ):
        ball = np.zeros((1000, 1000, 3), np.float32)
        yy, xx = np.mgrid[:1000, :1000]
        r = np.hypot(xx - 500, yy - 500) / 420
        shade = np.clip(1.0 - 0.5 * r**2, 0, 1) * (r <= 1)
        ball[:] = np.array(colour, np.float32) * shade[..., None]
        ball += rng.normal(0, 3, ball.shape) * (r <= 1)[..., None]
        yield label, np.clip(ball, 0, 255).astype(np.uint8)
    moon = cv2.resize(data.moon(), (800, 800))
    disc = np.zeros((1000, 1000), np.uint8)
    mask = np.hypot(*np.mgrid[-400:400, -400:400]) <= 390
    disc[100:900, 100:900] = np.where(mask, moon, 0)
    yield "moon-like disc on black", np.dstack([disc] * 3)
    yield "noise", noise(512)


def anterior_segment(seed: int, size: int = 760, *, lashes: bool = True) -> np.ndarray:
    """An external-eye / anterior-segment photo look-alike, in a dark room with a flash.

    A dark pupil inside an iris ring (brown, hazel, blue or grey, radial texture), a white or
    pinkish sclera and skin around it, eyelashes, and the flash's bright specular reflection.
    Sizes, colours, position and framing vary with ``seed``.
    """
    rng = np.random.default_rng(seed)
    h, w = round(size * 0.75), size
    image = np.full((h, w, 3), rng.integers(0, 25), np.float32)
    cx, cy = w / 2 + rng.uniform(-0.1, 0.1) * w, h / 2 + rng.uniform(-0.1, 0.1) * h
    iris = rng.uniform(0.18, 0.4) * h
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    r = np.hypot(xx - cx, yy - cy)
    angle = np.arctan2(yy - cy, xx - cx)
    if rng.random() < 0.7:  # the eye's surroundings: skin and sclera in an almond opening
        skin = np.array([rng.uniform(120, 200), rng.uniform(80, 140), rng.uniform(60, 110)])
        light = np.clip(1.2 - r / (1.6 * iris), 0.1, 1)[..., None]
        image = np.maximum(image, skin * light)
        opening = ((xx - cx) / (2.4 * iris)) ** 2 + ((yy - cy) / (1.1 * iris)) ** 2 <= 1
        sclera = np.array([rng.uniform(190, 235), rng.uniform(170, 215), rng.uniform(160, 210)])
        image[opening] = sclera * light[opening]
    colour = np.array(
        [
            (120, 70, 35),
            (95, 110, 60),
            (80, 110, 150),
            (120, 120, 125),
        ][rng.integers(0, 4)],
        np.float32,
    )
    texture = 0.75 + 0.25 * np.sin(angle * rng.integers(25, 60) + rng.uniform(0, 6))
    ring = np.clip(0.6 + 0.5 * r / iris, 0, 1.2) * texture
    inside = r <= iris
    image[inside] = (colour * ring[..., None])[inside]
    pupil = r <= iris * rng.uniform(0.3, 0.55)
    image[pupil] = rng.uniform(5, 25)
    if lashes:
        for _ in range(60):
            x0 = cx + rng.uniform(-2.2, 2.2) * iris
            y0 = cy - rng.uniform(0.9, 1.1) * iris
            tip = (int(x0 + rng.uniform(-20, 20)), int(y0 - rng.uniform(20, 60)))
            cv2.line(image, (int(x0), int(y0)), tip, (15, 10, 10), int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(1, 3))):  # the flash
        sx = cx + rng.uniform(-0.5, 0.5) * iris
        sy = cy + rng.uniform(-0.5, 0.5) * iris
        cv2.circle(
            image,
            (int(sx), int(sy)),
            max(2, int(rng.uniform(0.04, 0.1) * iris)),
            (255, 255, 255),
            -1,
        )
    image = cv2.GaussianBlur(image, (0, 0), 1.0) + rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def non_fundus_lookalikes(n_anterior: int = 12) -> Iterator[Photo]:
    """:func:`non_fundus_images` plus anterior-segment photos, slit-lamp-like and face crops."""
    from skimage import data

    yield from non_fundus_images()
    for seed in range(n_anterior):
        yield f"anterior segment {seed}", anterior_segment(seed, lashes=seed % 3 != 0)
    slit = np.zeros((570, 760, 3), np.uint8)  # a slit-lamp beam across a dark eye
    cv2.ellipse(slit, (380, 285), (200, 200), 0, 0, 360, (70, 60, 55), -1)
    cv2.ellipse(slit, (400, 285), (18, 230), 10, 0, 360, (240, 235, 220), -1)
    yield "slit-lamp beam", cv2.GaussianBlur(slit, (0, 0), 3)
    yield "face close-up (astronaut)", data.astronaut()[30:300, 120:390]
    yield "rocket", data.rocket()
    yield "coins", np.dstack([data.coins()] * 3)


# ------------------------------------------------------------------- wide-field camera layouts


def wide_field(
    rgb: np.ndarray,
    over: float,
    *,
    width: int = 760,
    height: int = 570,
    stamp: bool = False,
    background: int = 0,
) -> np.ndarray:
    """``rgb``'s field filling a ``width`` x ``height`` frame, as wide-angle cameras save it.

    The field's diameter is ``width * (1 + over)``: ``over`` > 0 clips it on the left and right
    as well as at the top and bottom (four sides; at 0.2 only slivers of backdrop are left in the
    corners), ``over`` <= 0 clips it at the top and bottom only. ``stamp`` burns a green date
    and time into the top-right corner; ``background`` is the surround's grey level.
    """
    from retinascreen.data.fundus import crop_fundus

    diameter = width * (1 + over)
    side = round(diameter * 1.02)
    square = crop_fundus(rgb, side)
    yy, xx = np.mgrid[:side, :side]
    square[np.hypot(yy - side / 2, xx - side / 2) > diameter / 2] = background
    frame = np.full((height, width, 3), background, np.uint8)
    y0, x0 = side // 2 - height // 2, side // 2 - width // 2
    patch = square[max(0, y0) : y0 + height, max(0, x0) : x0 + width]
    top, left = max(0, -y0), max(0, -x0)
    frame[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
    if stamp:
        text_at = (width - round(width * 0.34), round(height * 0.045))
        cv2.putText(
            frame, "2009/05/12 10:31:07", text_at, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2
        )
    return frame


WIDE_LAYOUTS: dict[str, dict[str, Any]] = {
    "clipped top-bottom": {"over": -0.1},
    "clipped 4 sides": {"over": 0.1, "stamp": True},
    "clipped 4 sides, slivers": {"over": 0.2},
    "grey surround, stamp": {"over": 0.05, "stamp": True, "background": 90},
}


def wide_layouts(rgb: np.ndarray, name: str) -> Iterator[Photo]:
    """One real photo in the wide-field layouts, at 760 x 570 and downscaled to 500 px."""
    for layout, args in WIDE_LAYOUTS.items():
        frame = wide_field(rgb, **args)
        yield f"{name}/{layout}", jpeg(frame, 90)
        yield f"{name}/{layout}/500px", resize_long_side(frame, 500)
