"""The result page and the PDF report explain a referral that the grade does not suggest."""

from __future__ import annotations

import shutil

from retinascreen.models.modelcard import read_card, write_card
from retinascreen.serving.predictor import Predictor
from tests.helpers.pdf import pdf_text
from tests.helpers.web import api_token, bearer, fundus_png, make_app, register, upload

PHOTO = fundus_png(3)


def thresholded_app(tmp_path, web_model_path, *, disagree: bool):
    """The web test model with a card threshold on the other (or the same) side of the photo's
    grade; returns the app and the photo's expected result."""
    plain = Predictor(web_model_path).predict(PHOTO)
    path = tmp_path / "thresholded.keras"
    shutil.copyfile(web_model_path, path)
    card = read_card(path)
    p, low = plain.referable_probability, plain.grade < 2
    threshold = p / 2 if low == disagree else (p + 1) / 2
    card.extra["referable_threshold"] = threshold
    card.metrics["referable"] = {"threshold": threshold, "target_sensitivity": 0.9}
    if disagree:  # as `retinascreen calibrate` writes it
        card.extra["site_calibration"] = {
            "site": "North clinic",
            "date": "2026-12-07",
            "photos": 312,
            "patients": 160,
            "threshold": threshold,
            "target_sensitivity": 0.9,
        }
    write_card(path, card)
    predictor = Predictor(path)
    expected = predictor.predict(PHOTO)
    assert (expected.referable != (expected.grade >= 2)) == disagree
    return make_app(tmp_path / "instance", predictor), expected


def test_result_page_pdf_and_api_say_why_the_referral_differs_from_the_grade(
    tmp_path, web_model_path
):
    from retinascreen.web import dispose

    app, expected = thresholded_app(tmp_path, web_model_path, disagree=True)
    note = expected.referral_note
    client = app.test_client()
    assert register(client, "alice").status_code == 302
    response = upload(client, PHOTO, "eye.png")
    assert response.status_code == 303
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "referral threshold" in note and "90 %" in note
    assert note.replace("'", "&#39;") in page
    sid = int(response.headers["Location"].rsplit("/", 1)[1])
    recalibrated = "Recalibrated for North clinic on 2026-12-07 with 312 of its graded photos"
    assert recalibrated in page  # the model notice says whose threshold this is
    pdf = client.get(f"/screenings/{sid}/report.pdf").data
    text = " ".join(pdf_text(pdf).split())
    assert note in text and recalibrated in text
    api = client.get(f"/api/v1/screenings/{sid}", headers=bearer(api_token(client, "alice")))
    assert api.get_json()["referral_note"] == note
    dispose(app)


def test_no_note_when_grade_and_referral_agree(tmp_path, web_model_path):
    from retinascreen.web import dispose

    app, expected = thresholded_app(tmp_path, web_model_path, disagree=False)
    client = app.test_client()
    assert register(client, "bob").status_code == 302
    response = upload(client, PHOTO, "eye.png")
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert expected.referral_note is None
    assert "data-referral-note" not in page and "referral threshold" not in page
    assert "Recalibrated" not in page
    dispose(app)
