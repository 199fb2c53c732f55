"""Maculopathy: lesions near the fovea, the screening programmes' reason to refer at any grade.

A :class:`MaculopathyRule` (a setting) names the lesion types that count (hard exudates by
default; a programme may add haemorrhages or microaneurysms), the radius of the macular zone
around the fovea in disc diameters (1.25 by default), the lesion-map probability and the
smallest lesion area that count (as a share of the disc's area, so it does not depend on the
photo's size), the smallest predicted grade at which they count (exudate-like spots in an eye
with no other sign of DR are more often drusen or reflections than diabetic maculopathy) and
whether a suspected maculopathy makes the photo referable whatever its grade.

:class:`MaculaCheck` runs the disc finder and the lesion segmenter on a photograph and applies
the rule; :func:`apply_to` folds its verdict into a :class:`~retinascreen.result.Prediction`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from retinascreen.data.photo import PhotoInput
from retinascreen.errors import ConfigError
from retinascreen.result import Prediction

if TYPE_CHECKING:
    from retinascreen.data.fundus import CropBox
    from retinascreen.serving.anatomy import Anatomy
    from retinascreen.serving.segmenter import Segmentation, Segmenter

__all__ = ["MaculaCheck", "MaculaResult", "MaculopathyRule", "apply_to", "lesions_near_fovea"]

LESION_WORDS = {
    "hard_exudate": "hard exudates",
    "haemorrhage": "haemorrhages",
    "microaneurysm": "microaneurysms",
    "cotton_wool": "cotton-wool spots",
}


@dataclass(frozen=True)
class MaculopathyRule:
    """Which lesions within what distance of the fovea mean "maculopathy suspected"."""

    lesions: tuple[str, ...] = ("hard_exudate",)
    # The defaults were chosen by ``bench/anatomy.py`` for the bundled IDRiD lesion model (its
    # flip-averaged maps; best Youden's J on IDRiD test photos with an exudate near the fovea
    # against DRIVE and IDRiD photos without one; never on srahim-dr): a confident, not tiny,
    # exudate within 1.25 DD.
    radius_dd: float = 1.25
    min_area_of_disc: float = 0.02
    refer: bool = True
    # The lesion-map probability that counts as a lesion (None: each class's model-card one).
    threshold: float | None = 0.6
    # Lesions near the fovea count only in an eye the grading model grades at least this
    # (0: whatever the grade, the default chosen by ``bench/anatomy.py``); without a grade
    # (no grading model) they always count.
    min_grade: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "lesions", tuple(self.lesions))
        unknown = [name for name in self.lesions if name not in LESION_WORDS]
        if not self.lesions or unknown:
            raise ConfigError(
                f"maculopathy lesions must be some of {', '.join(LESION_WORDS)}; got "
                f"{list(self.lesions)}"
            )
        if not 0 < float(self.radius_dd) <= 5:
            raise ConfigError(
                f"maculopathy radius must be 0..5 disc diameters, got {self.radius_dd}"
            )
        if not 0 <= float(self.min_area_of_disc) < 1:
            raise ConfigError(f"min_area_of_disc must be 0..1, got {self.min_area_of_disc}")
        if int(self.min_grade) != self.min_grade or not 0 <= int(self.min_grade) <= 4:
            raise ConfigError(f"maculopathy min_grade must be a grade 0-4, got {self.min_grade}")
        if self.threshold is not None and not 0 < float(self.threshold) < 1:
            raise ConfigError(
                f"maculopathy threshold must be between 0 and 1, got {self.threshold}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaculopathyRule:
        """From a settings table (e.g. TOML ``[maculopathy]``); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown maculopathy setting(s): {', '.join(unknown)}")
        values = dict(data)
        if "lesions" in values:
            values["lesions"] = tuple(values["lesions"])
        return cls(**values)

    def describe(self) -> str:
        """E.g. ``"hard exudates within 1.25 disc diameters of the fovea, in an eye graded 1
        or worse"``."""
        words = [LESION_WORDS[name] for name in self.lesions]
        what = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
        r = f"{self.radius_dd:g}"
        text = f"{what} within {r} disc diameter{'' if r == '1' else 's'} of the fovea"
        return text + (f", in an eye graded {self.min_grade} or worse" if self.min_grade else "")


@dataclass(frozen=True)
class MaculaResult:
    """The verdict: ``suspected`` (None when no fovea could be placed), the rule in words,
    lesion area found inside the zone per type (share of the disc's area), and the anatomy."""

    suspected: bool | None
    rule: str
    refer: bool
    areas: dict[str, float] = field(default_factory=dict)
    anatomy: Anatomy | None = None
    # The square the lesion map was cut from and its side, to draw on that map.
    crop: tuple[CropBox, int] | None = None

    def draw_on(self, view: np.ndarray) -> np.ndarray:
        """The anatomy (disc outline, fovea, macular circle) drawn on a lesion-map ``view``
        (the fundus crop the map was cut from); ``view`` unchanged without anatomy."""
        from retinascreen.data.anatomy import photo_scale, photo_to_crop
        from retinascreen.serving.anatomy import Anatomy, draw_anatomy

        a = self.anatomy
        if a is None or self.crop is None:
            return view
        box, size = self.crop
        k = view.shape[0] / size
        scale = photo_scale(box, size)

        def to_view(x: float, y: float) -> tuple[float, float]:
            u, v = photo_to_crop(box, size, x, y)
            return u * k, v * k

        fovea = None if a.fovea_centre is None else to_view(*a.fovea_centre)
        outline = np.array([to_view(float(x), float(y)) for x, y in a.disc_outline])
        moved = Anatomy(to_view(*a.disc_centre), a.disc_diameter / scale * k, a.disc_confidence,
                        outline, fovea, a.fovea_confidence, a.laterality, a.confidence)  # fmt: skip
        return draw_anatomy(view, moved)

    def to_dict(self) -> dict[str, Any]:
        return {
            "maculopathy": self.suspected,
            "maculopathy_rule": self.rule,
            "maculopathy_areas": {k: round(v, 4) for k, v in self.areas.items()},
        }


def lesions_near_fovea(
    seg: Segmentation, fovea_xy: tuple[float, float], disc_diameter: float, rule: MaculopathyRule
) -> dict[str, float]:
    """Area of each rule lesion inside the macular zone, as a share of the disc's area (the
    model card's masks, or the maps at the rule's ``threshold``); the fovea and disc diameter
    in ``seg``'s crop pixels."""
    side = seg.field.shape[0]
    yy, xx = np.ogrid[:side, :side]
    zone = np.hypot(xx - fovea_xy[0], yy - fovea_xy[1]) <= rule.radius_dd * disc_diameter
    disc_area = math.pi * (disc_diameter / 2) ** 2
    out = {}
    for name in rule.lesions:
        if name not in seg.masks:
            continue
        mask = seg.masks[name] if rule.threshold is None else (seg.maps[name] >= rule.threshold)
        out[name] = float(np.count_nonzero(mask & seg.field & zone)) / max(1.0, disc_area)
    return out


class MaculaCheck:
    """Disc finder + lesion segmenter + rule; ``disc_model``/``lesion_model`` None = bundled."""

    def __init__(
        self,
        rule: MaculopathyRule | None = None,
        *,
        disc_model: str | os.PathLike[str] | None = None,
        lesion_model: str | os.PathLike[str] | Segmenter | None = None,
        threads: int | None = None,
    ) -> None:
        from retinascreen.serving.anatomy import AnatomyFinder
        from retinascreen.serving.segmenter import Segmenter

        self.rule = rule or MaculopathyRule()
        self.finder = AnatomyFinder(disc_model, threads=threads)
        self.lesions = (
            lesion_model
            if isinstance(lesion_model, Segmenter)
            else Segmenter(lesion_model, "lesions", threads=threads)
        )
        missing = [name for name in self.rule.lesions if name not in self.lesions.classes]
        if missing:
            raise ConfigError(
                f"the lesion model does not map {', '.join(missing)} (its classes: "
                f"{', '.join(self.lesions.classes)})"
            )

    def check(
        self,
        image: PhotoInput,
        *,
        segmentation: Segmentation | None = None,
        grade: int | None = None,
    ) -> MaculaResult:
        """The verdict on one photograph (reuse a lesion ``segmentation`` already drawn, and a
        :class:`~retinascreen.data.photo.FundusPhoto`'s field and crops); ``grade``: the
        grading model's grade of the photo, for the rule's ``min_grade`` (None: not graded)."""
        from retinascreen.data.anatomy import photo_scale, photo_to_crop
        from retinascreen.data.photo import FundusPhoto

        photo = FundusPhoto.read(image)
        anatomy = self.finder.find(photo)
        text = self.rule.describe()
        if anatomy is None or anatomy.fovea_centre is None:
            return MaculaResult(None, text, False, {}, anatomy)
        seg = segmentation if segmentation is not None else self.lesions.segment(photo)
        box = photo.box
        size = seg.field.shape[0]
        fovea = photo_to_crop(box, size, *anatomy.fovea_centre)
        dd = anatomy.disc_diameter / photo_scale(box, size)
        areas = lesions_near_fovea(seg, fovea, dd, self.rule)
        suspected = any(v >= self.rule.min_area_of_disc and v > 0 for v in areas.values())
        suspected &= grade is None or grade >= self.rule.min_grade
        refer = suspected and self.rule.refer
        return MaculaResult(suspected, text, refer, areas, anatomy, (box, size))


def apply_to(prediction: Prediction, result: MaculaResult) -> Prediction:
    """``prediction`` with the anatomy and the maculopathy verdict; referable when the rule
    refers a suspected maculopathy of a gradable photo, whatever the grade."""
    referable = prediction.referable or (result.refer and prediction.gradable)
    return dataclasses.replace(
        prediction,
        referable=referable,
        anatomy=None if result.anatomy is None else result.anatomy.to_dict(),
        maculopathy=result.suspected,
        maculopathy_rule=result.rule,
    )
