"""DICOM headers read safely: what a screening needs, and no identifying field but the id."""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.dataset import Dataset

from retinascreen.data.dicom_headers import read_headers
from retinascreen.errors import NotAnImageError
from tests.helpers.dicom_files import dicom_bytes
from tests.helpers.drawing import draw_fundus


def _region(meaning: str) -> list[Dataset]:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "111900", "DCM", meaning
    return [item]


PERSONAL = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19600101",
    "PatientAddress": "1 Main Street",
    "PatientSex": "F",
}


def test_the_fields_a_screening_needs_are_read_and_nothing_else_identifying():
    extra = {
        "PatientID": "  MRN-42 ",
        "ImageLaterality": "R",
        "StudyDate": "20260105",
        "AcquisitionDate": "20260106",
        "Manufacturer": "Topcon",
        "ManufacturerModelName": "TRC-NW400",
        "AnatomicRegionSequence": _region("Macula centered"),
        **PERSONAL,
    }
    headers = read_headers(dicom_bytes(draw_fundus(64, seed=1), extra=extra))
    assert headers.patient_id == "MRN-42" and headers.eye == "right"
    assert headers.study_date == date(2026, 1, 5) and headers.date == date(2026, 1, 6)
    assert headers.device == "Topcon TRC-NW400" and headers.photo_field == "Macula centered"
    assert headers.is_photo
    kept = str(headers.to_dict())
    assert not any(value in kept for value in ("Doe", "19600101", "Main Street"))


def test_laterality_falls_back_and_odd_values_read_as_unknown():
    data = dicom_bytes(
        draw_fundus(64, seed=2),
        extra={"Laterality": "L", "StudyDate": "20261399", "PatientID": "\x07"},
    )
    headers = read_headers(data)
    assert headers.eye == "left"
    assert headers.study_date is None  # month 13: not a day
    assert headers.patient_id is None  # a control character only


@pytest.mark.parametrize(
    "data", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 200, b"\0" * 128 + b"DICM" + b"\xff" * 7]
)
def test_a_file_that_is_not_dicom_or_is_cut_short_is_a_clear_error(data):
    if data[128:132] == b"DICM":  # a DICM prefix and garbage: no readable element
        headers = read_headers(data)
        assert headers.patient_id is None and headers.eye is None
    else:
        with pytest.raises(NotAnImageError, match="DICOM"):
            read_headers(data)
