"""Hostile DICOM uploads through the REST API: a 4xx JSON error each, nothing stored."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from tests.helpers.dicom_files import deflate_bomb_dicom, dicom_bytes, jpeg_bomb_dicom
from tests.helpers.jpeg_bombs import scan_bomb
from tests.helpers.web import api_token, api_upload, register, stored_files


def fuzzed_rows_length() -> bytes:
    data = bytearray(dicom_bytes(np.zeros((8, 8, 3), np.uint8)))
    rows_at = data.index(b"\x28\x00\x10\x00US\x02\x00")
    data[rows_at + 6 : rows_at + 8] = struct.pack("<H", 3)  # BytesLengthException in pydicom
    return bytes(data)


@pytest.mark.parametrize(
    "make,status,words",
    [
        (lambda: jpeg_bomb_dicom(13_000), 413, "13000x13000"),
        (lambda: deflate_bomb_dicom(64 << 20), 413, "inflates to more than"),
        (
            lambda: dicom_bytes(np.zeros((8, 8), np.uint8), photometric="PALETTE COLOR"),
            422,
            "no colour lookup table",
        ),
        (fuzzed_rows_length, 422, "eye.dcm"),
    ],
    ids=["jpeg-bomb", "deflate-bomb", "palette-without-table", "fuzzed-length"],
)
def test_hostile_dicom_is_a_clear_4xx_and_nothing_is_stored(web_app, make, status, words):
    client = web_app.test_client()
    assert register(client, "alice").status_code == 302
    token = api_token(client, "alice")
    response = api_upload(client, token, make(), "eye.dcm")
    assert response.status_code == status, response.get_json()
    assert words in response.get_json()["error"]
    assert [name for name in stored_files(web_app) if not name.startswith(".")] == []


def _png(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "make,name,words",
    [
        (lambda: scan_bomb(1_024, 1_024, scans=2_000), "eye.jpg", "encoded abnormally"),
        (lambda: _png(np.zeros((1, 40_000, 3), np.uint8)), "strip.png", "40000 x 1 pixels"),
    ],
    ids=["scan-bomb", "one-pixel-strip"],
)
def test_abnormal_photos_say_what_is_wrong_and_nothing_is_stored(web_app, make, name, words):
    client = web_app.test_client()
    assert register(client, "alice").status_code == 302
    token = api_token(client, "alice")
    response = api_upload(client, token, make(), name)
    assert response.status_code == 422, response.get_json()
    message = response.get_json()["error"]
    assert words in message
    assert "RGB image array" not in message
    assert [n for n in stored_files(web_app) if not n.startswith(".")] == []


def test_a_dicom_upload_fills_patient_and_eye_and_shows_a_disagreement(web_app):
    """The header fills what the uploader left empty; a conflict keeps the uploader's value
    and is shown; no identifying field but the patient id is stored."""
    from tests.helpers.dicom_files import dicom_bytes
    from tests.helpers.drawing import draw_fundus
    from tests.helpers.web import api_token, api_upload, bearer, register

    client = web_app.test_client()
    register(client, "dana")
    token = api_token(client, "dana")
    extra = {
        "PatientID": "HDR-9",
        "ImageLaterality": "L",
        "StudyDate": "20260105",
        "PatientName": "Doe^Jane",
        "PatientBirthDate": "19600101",
    }
    data = dicom_bytes(draw_fundus(96, seed=3), extra=extra)
    filled = api_upload(client, token, data, name="eye.dcm").get_json()
    assert (filled["patient_id"], filled["eye"]) == ("HDR-9", "left")
    assert filled["dicom"]["filled"] == ["patient_id", "eye"]
    assert filled["dicom"]["disagreements"] == []
    assert "Doe" not in str(filled) and "19600101" not in str(filled)

    kept = api_upload(client, token, data, name="eye.dcm", eye="right").get_json()
    assert kept["eye"] == "right" and kept["patient_id"] == "HDR-9"
    (problem,) = kept["dicom"]["disagreements"]
    assert "left eye" in problem and "right" in problem
    page = client.get(f"/screenings/{kept['id']}").get_data(as_text=True)
    assert "data-dicom-disagreement" in page and "says the left eye" in page
    again = client.get(f"/api/v1/screenings/{kept['id']}", headers=bearer(token)).get_json()
    assert again["dicom"]["date"] == "2026-01-05"
