"""Disc, fovea, laterality and maculopathy in the web app: result JSON, page and report."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from tests.helpers.segmentation import LESION_CLASSES, save_tiny_segmenter
from tests.helpers.web import api_token, bearer, fundus_png, make_app, register, upload


@pytest.fixture(scope="module")
def disc_model(tmp_path_factory):
    """A tiny 'disc' segmenter: probability 0.5 at green 170 (the drawn disc is ~215, the
    retina ~90), so the bright ellipse of the drawn fundus is its disc."""
    import keras

    from retinascreen.models.modelcard import read_card, write_card

    folder = tmp_path_factory.mktemp("disc")
    path = save_tiny_segmenter(folder, "disc", ("optic_disc",), input_size=128)
    model = keras.models.load_model(path, compile=False)
    head = model.get_layer("maps")
    kernel = np.zeros((1, 1, 3, 1), np.float32)
    kernel[0, 0, 1, 0] = 1 / 6.0
    head.set_weights([kernel, np.array([-170 / 6.0], np.float32)])
    card = read_card(path)
    model.save(path)
    write_card(path, card)
    return path


def _app(tmp_path, web_predictor, segmentation_models, disc_model, **config):
    lesions = save_tiny_segmenter(tmp_path / "lesions", "lesions", LESION_CLASSES,
                                  training_data="IDRiD (tests)")  # fmt: skip
    return make_app(
        tmp_path / "instance",
        web_predictor,
        SEGMENTATION=True,
        VESSEL_MODEL=str(segmentation_models["vessels"]),
        LESION_MODEL=str(lesions),
        DISC_MODEL=str(disc_model),
        **config,
    )


def _screen_by_api(app):  # type: ignore[no-untyped-def]
    """Alice uploads the drawn left eye through the API: (client, token, result JSON)."""
    client = app.test_client()
    assert register(client, "alice").status_code == 302
    token = api_token(client, "alice")
    response = client.post(
        "/api/v1/screenings",
        data={"image": (io.BytesIO(fundus_png(3, 256)), "p.png"), "eye": "left"},
        headers=bearer(token),
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return client, token, response.get_json()


def test_anatomy_and_maculopathy_reach_the_result_page_and_report(
    tmp_path, web_predictor, segmentation_models, disc_model
):
    from retinascreen.web import dispose

    app = _app(tmp_path, web_predictor, segmentation_models, disc_model)
    try:
        client, token, result = _screen_by_api(app)
        anatomy = result["anatomy"]
        # The drawn disc sits right of the centre, so the fovea is found left of it: a right eye.
        assert anatomy["laterality"] == "right"
        assert anatomy["disc"]["centre"][0] > anatomy["fovea"]["centre"][0]
        assert 150 < anatomy["disc"]["centre"][0] < 200  # photo pixels (256 px photo)
        # The tiny lesion model calls every bright retina pixel an exudate: maculopathy, referred.
        assert result["maculopathy"] is True and result["referable"] is True
        assert "within 1.25 disc diameters of the fovea" in result["maculopathy_rule"]

        sid = result["id"]
        page = client.get(f"/screenings/{sid}").get_data(as_text=True)
        assert "Maculopathy suspected" in page
        assert re.search(r"looks like a <strong>right eye</strong>", page)
        assert "Entered as the left eye, but the photo looks like a right eye" in page
        report = client.get(f"/screenings/{sid}/report.pdf").data
        assert b"Maculopathy suspected" in report or b"aculopathy" in report
    finally:
        dispose(app)


def test_a_programme_that_does_not_refer_maculopathy(
    tmp_path, web_predictor, segmentation_models, disc_model
):
    from retinascreen.web import dispose

    app = _app(tmp_path, web_predictor, segmentation_models, disc_model,
               MACULOPATHY={"refer": False})  # fmt: skip
    try:
        client = app.test_client()
        assert register(client, "alice").status_code == 302
        response = upload(client, fundus_png(3, 256), "p.png")
        assert response.status_code == 303
        sid = int(response.headers["Location"].rsplit("/", 1)[1])
        token = api_token(client, "alice")
        result = client.get(f"/api/v1/screenings/{sid}", headers=bearer(token)).get_json()
        assert result["maculopathy"] is True
        alone = web_predictor.predict(fundus_png(3, 256))  # the grading model's own decision
        assert result["referable"] == alone.referable
    finally:
        dispose(app)


def test_exudates_count_only_from_the_rules_grade_up(
    tmp_path, web_predictor, segmentation_models, disc_model
):
    from retinascreen.web import dispose

    grade = web_predictor.predict(fundus_png(3, 256)).grade
    if grade == 4:
        pytest.skip("the tiny grading model grades this photo 4: no grade above it to require")
    app = _app(tmp_path, web_predictor, segmentation_models, disc_model,
               MACULOPATHY={"min_grade": grade + 1})  # fmt: skip
    try:
        _, _, result = _screen_by_api(app)
        assert result["anatomy"]["fovea"] is not None  # the exudates were looked for
        assert result["maculopathy"] is False
        assert f"in an eye graded {grade + 1} or worse" in result["maculopathy_rule"]
    finally:
        dispose(app)
