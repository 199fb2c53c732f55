"""Photos in folders: finding them, and what a file's name and folders say (patient, eye).

One home for the eye's words (``left``/``right``, ``l``/``r``, ``os``/``od``) and for the two
naming rules: a data set's file names (:func:`stem_patient_and_eye`: ``10_left``, ``10_L``),
and a screened folder's paths (:func:`patient_and_eye`, which also reads ``p7/left.png`` and
``p7/right/a.png``). The web form, the data-set readers and the batch screener all use them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from retinascreen.data.images import SUPPORTED_SUFFIXES
from retinascreen.errors import DatasetError

__all__ = [
    "EYES",
    "EYE_WORDS",
    "find_images",
    "parse_eye",
    "patient_and_eye",
    "stem_patient_and_eye",
]

EYES = ("left", "right")
# Every word for an eye this package reads, lower case (OS/OD: oculus sinister/dexter).
EYE_WORDS = {
    "left": "left",
    "right": "right",
    "l": "left",
    "r": "right",
    "os": "left",
    "od": "right",
}

# A data set's names: ``10_left`` / ``10-right`` (any case), or ``Patient001_L`` / ``_R`` with
# one capital letter (e.g. srahim-dr), so that ``img_l`` stays a name.
_DATASET_EYE = re.compile(r"^(?P<patient>.+?)[_-](?P<eye>left|right)$", re.IGNORECASE)
_DATASET_LETTER = re.compile(r"^(?P<patient>.+?)[_-](?P<eye>[LR])$")
# A screened folder's names: any eye word after ``_``, ``-``, ``.`` or a space, any case.
_FOLDER_EYE = re.compile(r"^(?P<patient>.+?)[_\-. ](?P<eye>left|right|os|od|l|r)$", re.IGNORECASE)


def find_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursively, by suffix), sorted; hidden files skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def parse_eye(value: str | None) -> str | None:
    """``left`` / ``right`` from any of :data:`EYE_WORDS` (any case, spaces trimmed), else None."""
    if not value:
        return None
    return EYE_WORDS.get(value.strip().lower())


def stem_patient_and_eye(stem: str) -> tuple[str, str | None]:
    """A data set's file name: ``10_left`` / ``10_L`` -> ("10", "left"); names without an eye
    suffix are their own patient."""
    match = _DATASET_EYE.match(stem)
    if match:
        return match.group("patient"), match.group("eye").lower()
    match = _DATASET_LETTER.match(stem)
    if match:
        return match.group("patient"), EYE_WORDS[match.group("eye").lower()]
    return stem, None


def patient_and_eye(relative: str | os.PathLike[str]) -> tuple[str, str]:
    """(patient, eye) from a path relative to the screened folder.

    ``123_left.jpeg`` (EyePACS) -> ("123", "left"); ``p7/right.png`` or ``p7/left/a.png`` ->
    ("p7", ...); ``p7/img1.png`` -> ("p7", ""); ``scan.png`` -> ("scan", "").
    """
    rel = Path(relative)
    stem, parents = rel.stem, list(rel.parent.parts)
    match = _FOLDER_EYE.match(stem)
    if match:
        return match["patient"], EYE_WORDS[match["eye"].lower()]
    if stem.lower() in EYE_WORDS and parents:
        return parents[-1], EYE_WORDS[stem.lower()]
    if parents and parents[-1].lower() in EYE_WORDS and len(parents) >= 2:
        return parents[-2], EYE_WORDS[parents[-1].lower()]
    if parents:
        return parents[-1], ""
    return stem, ""
