"""One upload, one pass: the photo's field is searched for once and each crop cut once.

Before ``FundusPhoto`` a web upload with both segmenters found the field 3 times and cropped the
full-size photo 9 times (quality, grading input, then input, view and field mask per segmenter).
"""

from __future__ import annotations

import re

import pytest

from tests.helpers.counting import count_calls
from tests.helpers.segmentation import LESION_CLASSES, save_tiny_segmenter
from tests.helpers.web import fundus_png, make_app, register, upload

PHOTO_SIDE = 160  # the uploaded photo: larger than every crop, so a full-size crop is its own


@pytest.fixture
def counted(monkeypatch):
    """Counts of field searches and of crops cut from a full-size photo of PHOTO_SIDE px."""
    from retinascreen.data import fundus

    counts: dict[str, int] = {}
    count_calls(monkeypatch, fundus.find_disc, counts, "field searches")
    count_calls(
        monkeypatch,
        fundus.crop_square,
        counts,
        "full-size crops",
        when=lambda rgb, *_: rgb.shape[:2] == (PHOTO_SIDE, PHOTO_SIDE),
    )
    return counts


def test_one_upload_with_both_segmenters_finds_the_field_once_and_crops_once_each(
    tmp_path, web_predictor, segmentation_models, counted
):
    from retinascreen.web import dispose
    from retinascreen.web.segmentation import segmenters

    # A vessel model at its own size with CLAHE (as the bundled one), lesions at the grader's.
    vessels = save_tiny_segmenter(
        tmp_path / "models", "vessels", input_size=96, preprocessing={"clahe": True}
    )
    app = make_app(
        tmp_path / "instance",
        web_predictor,
        SEGMENTATION=True,
        VESSEL_MODEL=str(vessels),
        LESION_MODEL=str(segmentation_models["lesions"]),
    )
    try:
        with app.app_context():
            loaded = segmenters(app)
        assert all(loaded.values()), loaded
        assert loaded["lesions"].classes == LESION_CLASSES
        client = app.test_client()
        assert register(client, "alice").status_code == 302
        for key in counted:
            counted[key] = 0  # only the upload is counted
        response = upload(client, fundus_png(3, size=PHOTO_SIDE), "photo.png")
        assert response.status_code == 303, response.get_data(as_text=True)[:400]
        sid = int(re.search(r"/screenings/(\d+)$", response.headers["Location"]).group(1))
        for image in ("heatmap", "vessels", "lesions"):  # every overlay was drawn and stored
            assert client.get(f"/screenings/{sid}/{image}.png").status_code == 200, image
    finally:
        dispose(app)

    # Quality (its own square), the grading crop, and one per other distinct pre-processing
    # (vessels, lesions, the optic disc).
    distinct = {"quality", web_predictor.preprocessing}
    distinct |= {segmenter.preprocessing for segmenter in loaded.values()}
    from retinascreen.serving.segmenter import Segmenter

    distinct.add(Segmenter(None, "disc").preprocessing)  # the disc finder (maculopathy rule)
    assert len(distinct) == 4
    assert counted["field searches"] == 1, counted
    assert counted["full-size crops"] <= min(len(distinct), 5), counted
