"""What an uploaded DICOM photograph's header says, set against what the uploader entered.

The header fills the patient id and the eye the uploader left empty; where both give a value
and they differ, the uploader's is kept and the disagreement is stored with the result and
shown on the result page (never silently overwritten). Of the identifying fields only the
patient id is kept; the visit day, device and photographed field come along.
"""

from __future__ import annotations

from typing import Any

from retinascreen.data.dicom_headers import DicomHeaders, is_dicom, read_headers
from retinascreen.errors import RetinascreenError
from retinascreen.web.inputs import clean_patient_id


def header_of(data: bytes, filename: str | None) -> DicomHeaders | None:
    """The header of a DICOM upload (None for other formats or an unreadable header)."""
    if not is_dicom(data):
        return None
    try:
        return read_headers(data, filename or "upload")
    except RetinascreenError:
        return None  # the decoder will say what is wrong with the file


def reconcile(
    headers: DicomHeaders | None, patient_id: str | None, eye: str | None
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """(patient id, eye, the ``dicom`` note for the result) from the header and the form."""
    if headers is None:
        return patient_id, eye, None
    disagreements: list[str] = []
    header_patient = None
    try:
        header_patient = clean_patient_id(headers.patient_id)
    except RetinascreenError:
        disagreements.append("The DICOM header's patient id is unusable and was ignored.")
    if header_patient and patient_id and header_patient != patient_id:
        disagreements.append(
            f"The DICOM header says patient {header_patient}; you entered {patient_id} (kept)."
        )
    if headers.eye and eye and headers.eye != eye:
        disagreements.append(
            f"The DICOM header says the {headers.eye} eye; you entered {eye} (kept)."
        )
    note: dict[str, Any] = {
        "patient_id": header_patient,
        "eye": headers.eye,
        "date": headers.date.isoformat() if headers.date else None,
        "device": headers.device,
        "photo_field": headers.photo_field,
        "filled": [
            name
            for name, entered, found in (
                ("patient_id", patient_id, header_patient),
                ("eye", eye, headers.eye),
            )
            if not entered and found
        ],
        "disagreements": disagreements,
    }
    return patient_id or header_patient, eye or headers.eye, note
