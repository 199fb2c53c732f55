"""One synthetic fundus photograph: :func:`generate` and the grade draws."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from retinascreen.grading import N_CLASSES, check_grade
from retinascreen.synthetic.acquisition import (
    UNGRADABLE_KINDS,
    apply_acquisition,
    draw_acquisition,
    draw_ungradable,
    jpeg_roundtrip,
    make_frame,
)
from retinascreen.synthetic.anatomy import build_anatomy, composite_vessels, render_background
from retinascreen.synthetic.frame import fov_alpha
from retinascreen.synthetic.lesions import (
    composite_bright,
    composite_red,
    draw_lesions,
    lesion_masks,
    plan_lesions,
)

APTOS_GRADE_MIX: tuple[float, ...] = (0.49, 0.10, 0.27, 0.05, 0.08)
MIN_SIZE, MAX_SIZE = 64, 1024
_STREAMS = ("grade", "eye", "anatomy", "lesions", "acquisition", "ungradable")


@dataclass
class Sample:
    """A synthetic photograph with its truth.

    ``masks`` holds one boolean (h, w) mask for *every* name in ``LESIONS`` (all-False where the
    lesion is absent). ``meta`` has ``acquisition`` (camera parameters), ``anatomy`` (disc,
    fovea, quadrant axes), ``lesions`` (counts per type, quadrants, severe criteria met),
    ``dme_risk`` (0/1/2, IDRiD style) and ``seed``.
    """

    image: np.ndarray
    grade: int
    masks: dict[str, np.ndarray]
    eye: str
    patient: str
    ungradable: str | None = None
    meta: dict = field(default_factory=dict)


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([int(seed), 0x5EED]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children, strict=True)}


def check_mix(grade_mix: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate and normalise a grade mix of five non-negative weights."""
    mix = np.asarray(grade_mix, dtype=float)
    if mix.shape != (N_CLASSES,) or (mix < 0).any() or mix.sum() <= 0:
        raise ValueError(
            f"grade_mix must be {N_CLASSES} non-negative weights, got {list(grade_mix)}"
        )
    return mix / mix.sum()


def draw_grade(
    rng: np.random.Generator, grade_mix: Sequence[float] | np.ndarray = APTOS_GRADE_MIX
) -> int:
    """One grade from ``grade_mix``."""
    return int(rng.choice(N_CLASSES, p=check_mix(grade_mix)))


def fellow_eye_grade(
    rng: np.random.Generator, grade: int, grade_mix: Sequence[float] | np.ndarray = APTOS_GRADE_MIX
) -> int:
    """Grade of the fellow eye: usually the same, sometimes one step away.

    A Metropolis step (propose +-1, accept by the ratio of the mix) keeps the marginal grade
    distribution exactly ``grade_mix`` while making the two eyes of a patient correlated.
    """
    mix = check_mix(grade_mix)
    g = grade
    for _ in range(2):
        if rng.random() < 0.5:
            continue
        proposal = g + (1 if rng.random() < 0.5 else -1)
        if 0 <= proposal < N_CLASSES and rng.random() < min(
            1.0, mix[proposal] / max(mix[g], 1e-12)
        ):
            g = proposal
    return g


def _dme_risk(masks: dict, anatomy: dict) -> int:
    ex = masks["hard_exudate"]
    if not ex.any():
        return 0
    ys, xs = np.nonzero(ex)
    d = np.hypot(xs - anatomy["fovea"][0], ys - anatomy["fovea"][1]).min()
    return 2 if d < 2 * anatomy["disc_radius"] else 1


def render(
    seed: int,
    grade: int | None = None,
    *,
    size: int = 512,
    ungradable: str | None = None,
    eye: str | None = None,
    patient: str | None = None,
) -> Sample:
    """Like :func:`generate` but without the JPEG round trip (``meta`` has its quality)."""
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ValueError(f"size must be {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    if ungradable is not None and ungradable not in UNGRADABLE_KINDS:
        raise ValueError(
            f"ungradable must be one of {', '.join(UNGRADABLE_KINDS)} or None, got {ungradable!r}"
        )
    rngs = _streams(seed)
    drawn = draw_grade(rngs["grade"])
    grade = drawn if grade is None else check_grade(grade)
    drawn_eye = "right" if rngs["eye"].random() < 0.5 else "left"
    eye = drawn_eye if eye is None else eye
    if eye not in ("left", "right"):
        raise ValueError(f"eye must be 'left' or 'right', got {eye!r}")
    acq = draw_acquisition(rngs["acquisition"], int(size))
    frame = make_frame(acq, eye)
    anat = build_anatomy(rngs["anatomy"], frame)
    anatomy_meta = anat.meta()
    plan = plan_lesions(rngs["lesions"], grade)
    canvases, lesion_info = draw_lesions(rngs["lesions"], plan, anat, {"anatomy": anatomy_meta})
    ung = draw_ungradable(rngs["ungradable"], ungradable)

    img = render_background(anat)
    composite_bright(img, canvases, anat, ["hard_exudate"])  # deep retina, under the vessels
    composite_vessels(img, anat)
    composite_red(img, canvases, anat, ["microaneurysm", "haemorrhage", "irma"])
    composite_bright(img, canvases, anat, ["cotton_wool"])  # nerve fibre layer
    composite_red(img, canvases, anat, ["neovascularisation", "preretinal_haemorrhage"])
    fov = fov_alpha(frame)
    masks = lesion_masks(canvases, fov)
    image = apply_acquisition(img, frame, acq, ung, fov)
    meta = {
        "seed": int(seed),
        "acquisition": acq,
        "anatomy": anatomy_meta,
        "lesions": lesion_info,
        "dme_risk": _dme_risk(masks, anatomy_meta),
        "ungradable": ung.get("kind"),
    }
    return Sample(
        image=image,
        grade=grade,
        masks=masks,
        eye=eye,
        patient=patient if patient is not None else f"s{int(seed)}",
        ungradable=ungradable,
        meta=meta,
    )


def generate(
    seed: int,
    grade: int | None = None,
    *,
    size: int = 512,
    ungradable: str | None = None,
    eye: str | None = None,
    patient: str | None = None,
) -> Sample:
    """A synthetic colour fundus photograph of ``grade`` (drawn from APTOS_GRADE_MIX when None).

    Deterministic for ``seed``. The grade, eye, anatomy, lesions, camera and degradation come
    from independent random streams, so for one seed the photographs of different grades
    differ only where lesions are. ``size`` is the image width (64..1024); the height follows
    the drawn aspect ratio (1:1, 4:3 or 3:2). ``ungradable`` is None or one of "dark",
    "overexposed", "blurred", "occluded". The image goes through a JPEG round trip at the
    drawn quality, whatever the grade.
    """
    sample = render(seed, grade, size=size, ungradable=ungradable, eye=eye, patient=patient)
    sample.image = jpeg_roundtrip(sample.image, sample.meta["acquisition"]["jpeg_quality"])
    return sample
