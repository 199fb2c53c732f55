"""What a fundus photograph's DICOM header says about it, read safely and kept minimal.

:func:`read_headers` reads only the header (never the pixel data, never a value longer than a
few kilobytes), tolerates the odd values of real cameras and fuzzed files, and keeps the fields
a screening needs: the patient id (the only identifying field kept: no name, birth date, sex or
address is ever copied), the eye, the study and acquisition dates, the device, the photo field
and the UIDs that let results refer back to the source image. Anything unreadable is None.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from retinascreen.errors import NotAnImageError

OPHTHALMIC_PHOTO_8BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.1"
OPHTHALMIC_PHOTO_16BIT = "1.2.840.10008.5.1.4.1.1.77.1.5.2"
WIDE_FIELD = "1.2.840.10008.5.1.4.1.1.77.1.5.7"  # Wide Field Ophthalmic Photography (stereo: 5.8)
VL_PHOTO = "1.2.840.10008.5.1.4.1.1.77.1.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
PHOTO_CLASSES = (
    OPHTHALMIC_PHOTO_8BIT,
    OPHTHALMIC_PHOTO_16BIT,
    WIDE_FIELD,
    VL_PHOTO,
    SECONDARY_CAPTURE,
)
"""SOP classes a colour fundus photograph arrives as (ophthalmic photography first)."""

_LATERALITY = {"L": "left", "R": "right"}
_MAX_VALUE = 4096  # longer values (a private blob, a fuzzed length) are never read


@dataclass(frozen=True)
class DicomHeaders:
    """The header fields a screening uses; None where the file does not say."""

    patient_id: str | None
    eye: str | None  # "left" | "right" (ImageLaterality, else Laterality)
    study_date: date | None
    acquisition_date: date | None
    device: str | None  # manufacturer and model name
    photo_field: str | None  # e.g. "Macula centered" from the anatomic region / view code
    modality: str | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_instance_uid: str | None
    series_instance_uid: str | None

    @property
    def date(self) -> date | None:
        """The day the photo was taken: acquisition date, else study date."""
        return self.acquisition_date or self.study_date

    @property
    def is_photo(self) -> bool:
        """Whether the SOP class is one a fundus photograph is stored as."""
        return self.sop_class_uid in PHOTO_CLASSES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (dates as ISO strings)."""
        data = asdict(self)
        for key in ("study_date", "acquisition_date"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def is_dicom(data: bytes) -> bool:
    """Whether ``data`` starts like a DICOM Part 10 file (preamble + ``DICM``)."""
    return data[128:132] == b"DICM"


def read_headers(data: bytes, label: str = "file") -> DicomHeaders:
    """The :class:`DicomHeaders` of a DICOM file's bytes; NotAnImageError when it is not DICOM.

    Pixel data is not read (``stop_before_pixels``) and long values are deferred, so a huge or
    hostile file costs no more than its header.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not is_dicom(data):
        raise NotAnImageError(f"{label}: not a DICOM file (no DICM marker)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(
                io.BytesIO(data), stop_before_pixels=True, defer_size=_MAX_VALUE, force=True
            )
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise NotAnImageError(f"{label}: the DICOM header cannot be read ({exc})") from None
    return headers_of(ds)


def headers_of(ds: Any) -> DicomHeaders:
    """:class:`DicomHeaders` of a pydicom ``Dataset`` (e.g. one a PACS returned)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        laterality = _text(ds, "ImageLaterality") or _text(ds, "Laterality")
        maker = " ".join(
            t for t in (_text(ds, "Manufacturer"), _text(ds, "ManufacturerModelName")) if t
        )
        meta = getattr(ds, "file_meta", None)
        sop_class = _text(ds, "SOPClassUID") or (
            _text(meta, "MediaStorageSOPClassUID") if meta is not None else None
        )
        return DicomHeaders(
            patient_id=_text(ds, "PatientID", limit=64),
            eye=_LATERALITY.get((laterality or "").upper()[:1]),
            study_date=_date(_text(ds, "StudyDate")),
            acquisition_date=_date(
                _text(ds, "AcquisitionDate") or (_text(ds, "AcquisitionDateTime") or "")[:8]
            ),
            device=maker[:128] or None,
            photo_field=_photo_field(ds),
            modality=_text(ds, "Modality", limit=16),
            sop_class_uid=sop_class,
            sop_instance_uid=_text(ds, "SOPInstanceUID"),
            study_instance_uid=_text(ds, "StudyInstanceUID"),
            series_instance_uid=_text(ds, "SeriesInstanceUID"),
        )


def _text(ds: Any, keyword: str, limit: int = 128) -> str | None:
    """A header value as trimmed printable text (None when absent, unreadable or blank)."""
    if ds is None:
        return None
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a corrupt element reads as absent
        return None
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    text = "".join(c for c in str(value) if c.isprintable()).strip()
    return text[:limit] or None


def _date(value: str | None) -> date | None:
    """A DICOM DA value (YYYYMMDD) as a date; None when absent or not a real day."""
    if not value or len(value) < 8 or not value[:8].isdigit():
        return None
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None


def _photo_field(ds: Any) -> str | None:
    """The photographed field: the meaning of the first anatomic-region or view code."""
    for keyword in ("AnatomicRegionSequence", "ViewCodeSequence"):
        try:
            items = ds.get(keyword)
            if items:
                meaning = _text(items[0], "CodeMeaning")
                if meaning:
                    return meaning
        except Exception:  # noqa: BLE001 - a corrupt sequence reads as absent
            continue
    return None
