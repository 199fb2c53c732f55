"""The PDF report prints every script a patient id can hold, and photos the right way up."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from tests.helpers.drawing import draw_fundus
from tests.helpers.pdf import images, pdf_text
from tests.helpers.web import fundus_png, register, upload


def report_of(app, photo: bytes, name: str, **fields: str) -> bytes:
    client = app.test_client()
    assert register(client, "alice").status_code == 302
    response = upload(client, photo, name, **fields)
    assert response.status_code == 303, response.get_data(as_text=True)[-600:]
    sid = int(response.headers["Location"].rsplit("/", 1)[1])
    report = client.get(f"/screenings/{sid}/report.pdf")
    assert report.status_code == 200 and report.data.startswith(b"%PDF")
    return report.data


def test_accents_combining_marks_cjk_cyrillic_and_emoji_print_as_text(web_app):
    patient = "Zoë 山田 e\u0301 Жанна Σοφία かな 😀 🧬"
    pdf = report_of(web_app, fundus_png(3), "eye.png", patient_id=patient)
    text = " ".join(pdf_text(pdf).split())  # the table cell may wrap the id over two lines
    # e + COMBINING ACUTE prints as é; DejaVu draws 😀, but no font has 🧬: it prints its name.
    assert "Zoë 山田 é Жанна Σοφία かな 😀 [DNA DOUBLE HELIX]" in text
    assert "■" not in text and "\ufffd" not in text
    assert b"/FontFile2" in pdf  # DejaVu Sans is embedded (a subset), not assumed
    assert b"/BaseFont /STSong-Light" in pdf and b"/BaseFont /HeiseiMin-W3" in pdf
    assert "Screened by" in text and "alice" in text and "Diabetic retinopathy" in text


def test_exif_rotated_jpeg_is_embedded_upright(web_app):
    photo = draw_fundus(96, seed=3)[:, 8:88]  # 80 wide, 96 tall: a portrait photo
    stored = np.ascontiguousarray(np.rot90(photo))  # 96 wide, 80 tall as the camera wrote it
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 degrees clockwise to display" undoes rot90 (counterclockwise)
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=95, exif=exif)
    pdf = report_of(web_app, buffer.getvalue(), "turned.jpg")
    assert (80, 96) in images(pdf)  # upright: 80 wide, 96 tall
    assert (96, 80) not in images(pdf)


def _screen(app, client, photo: bytes, name: str) -> int:
    response = upload(client, photo, name)
    assert response.status_code == 303, response.get_data(as_text=True)[-600:]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_a_large_photo_is_embedded_bounded_and_the_report_rendered_once(web_app, monkeypatch):
    from retinascreen.web import report as report_module
    from retinascreen.web.db import session
    from retinascreen.web.models import Screening

    client = web_app.test_client()
    assert register(client, "alice").status_code == 302
    sid = _screen(web_app, client, fundus_png(4), "eye.png")
    # The stored photo becomes a 12-megapixel JPEG, as a camera original would be.
    big = np.asarray(Image.fromarray(draw_fundus(500, seed=4)).resize((4000, 3000)))
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="JPEG", quality=90)
    with web_app.app_context():
        photo = session().get(Screening, sid).photo_name
    (web_app.extensions["retinascreen.photos"].path(photo)).write_bytes(buffer.getvalue())

    renders = []
    build = report_module.build_report
    monkeypatch.setattr(
        report_module, "build_report", lambda *a, **k: renders.append(1) or build(*a, **k)
    )
    first = client.get(f"/screenings/{sid}/report.pdf")
    assert first.status_code == 200
    sizes = images(first.data)
    assert sizes and max(max(size) for size in sizes) <= 1600  # EMBED_MAX_SIDE
    assert (1600, 1200) in sizes  # the photo, reduced with its proportions kept
    assert len(first.data) < 1_500_000
    again = client.get(f"/screenings/{sid}/report.pdf")
    assert again.data == first.data and len(renders) == 1  # cached, not rendered again
