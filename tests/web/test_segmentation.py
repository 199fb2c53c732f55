"""Vessel and lesion overlays in the web app: stored with the upload, shown, served, reported."""

from __future__ import annotations

import re

import pytest

from tests.helpers.web import (
    api_token,
    api_upload,
    bearer,
    dark_fundus_png,
    fundus_png,
    login,
    make_app,
    register,
    upload,
)


@pytest.fixture
def seg_app(tmp_path, web_predictor, segmentation_models):
    from retinascreen.web import dispose

    app = make_app(
        tmp_path / "instance",
        web_predictor,
        SEGMENTATION=True,
        VESSEL_MODEL=str(segmentation_models["vessels"]),
        LESION_MODEL=str(segmentation_models["lesions"]),
    )
    yield app
    dispose(app)


def signed_in(app, name="alice"):
    client = app.test_client()
    assert register(client, name).status_code == 302  # signed in on registration
    return client


def screening_id(response) -> int:
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    return int(re.search(r"/screenings/(\d+)$", response.headers["Location"]).group(1))


def test_upload_stores_shows_and_reports_vessel_and_lesion_overlays(seg_app):
    client = signed_in(seg_app)
    sid = screening_id(upload(client, fundus_png(3), "photo.png"))
    page = client.get(f"/screenings/{sid}").get_data(as_text=True)
    for text in ("Show heat map", "Show vessels", "Show lesions", "Vessel density"):
        assert text in page, text
    # what the lesion model learned from comes from its card
    assert "Lesion maps were learned from synthetic photos only" in page
    assert "synthetic generator lesion masks (tests)" in page
    assert re.search(r"Vessel density: <strong>\d+\.\d%</strong>", page)
    for image in ("heatmap", "vessels", "lesions"):
        assert f'src="/screenings/{sid}/{image}.png"' in page
        response = client.get(f"/screenings/{sid}/{image}.png")
        assert response.status_code == 200 and response.data.startswith(b"\x89PNG"), image

    # another user sees none of them
    other = signed_in(seg_app, "bob")
    for image in ("vessels", "lesions"):
        assert other.get(f"/screenings/{sid}/{image}.png").status_code == 404

    report = client.get(f"/screenings/{sid}/report.pdf").data
    assert report.count(b"/Subtype /Image") >= 4  # photo, heat map, vessels, lesions
    assert b"Vessel map" in report and b"Lesion map" in report
    assert b"synthetic photos only" in report


def test_overlays_survive_the_start_up_sweep(tmp_path, seg_app, web_predictor):
    from retinascreen.web import dispose

    client = signed_in(seg_app)
    sid = screening_id(upload(client, fundus_png(3), "photo.png"))
    dispose(seg_app)
    restarted = make_app(tmp_path / "instance", web_predictor)  # start-up: migrate and sweep
    try:
        client = restarted.test_client()
        assert login(client, "alice").status_code == 302
        for image in ("photo", "heatmap.png", "vessels.png", "lesions.png"):
            assert client.get(f"/screenings/{sid}/{image}").status_code == 200, image
    finally:
        dispose(restarted)


def test_api_returns_mask_urls_that_serve_pngs_to_their_owner_only(seg_app):
    client = seg_app.test_client()
    register(client, "alice")
    token = api_token(client, "alice")
    body = api_upload(client, token, fundus_png(3)).get_json()
    sid = body["id"]
    assert body["masks"] == {
        "vessels": f"/api/v1/screenings/{sid}/vessels.png",
        "lesions": f"/api/v1/screenings/{sid}/lesions.png",
    }
    assert body["heatmap"] == f"/api/v1/screenings/{sid}/heatmap.png"
    assert 0 < body["segmentation"]["vessel_density"] < 1
    for url in (*body["masks"].values(), body["heatmap"]):
        response = client.get(url, headers=bearer(token))
        assert response.status_code == 200 and response.mimetype == "image/png", url
        assert client.get(url).status_code == 401
    bob_client = seg_app.test_client()
    register(bob_client, "bob")
    bob = api_token(bob_client, "bob")
    assert client.get(body["masks"]["vessels"], headers=bearer(bob)).status_code == 404
    listed = client.get("/api/v1/screenings", headers=bearer(token)).get_json()
    assert listed["screenings"][0]["masks"] == body["masks"]


def test_a_segmenter_that_fails_never_fails_the_upload(tmp_path, web_predictor, web_model_path):
    from retinascreen.web import dispose

    broken = tmp_path / "broken.keras"
    broken.write_text("not a model")
    app = make_app(
        tmp_path / "instance",
        web_predictor,
        SEGMENTATION=True,
        VESSEL_MODEL=str(broken),
        LESION_MODEL=str(web_model_path),  # a grading model: refused as a segmenter
    )
    try:
        client = signed_in(app)
        sid = screening_id(upload(client, fundus_png(3), "photo.png"))
        page = client.get(f"/screenings/{sid}").get_data(as_text=True)
        assert "Show heat map" in page and "Show vessels" not in page
        assert client.get(f"/screenings/{sid}/vessels.png").status_code == 404
    finally:
        dispose(app)


def test_an_ungradable_photo_gets_a_vessel_map_but_no_lesion_map(seg_app):
    client = signed_in(seg_app)
    sid = screening_id(upload(client, dark_fundus_png(), "dark.png"))
    page = client.get(f"/screenings/{sid}").get_data(as_text=True)
    assert "Ungradable" in page and "Show vessels" in page and "Show lesions" not in page
    assert client.get(f"/screenings/{sid}/vessels.png").status_code == 200
    assert client.get(f"/screenings/{sid}/lesions.png").status_code == 404


def test_the_bundled_models_draw_the_overlays_by_default(tmp_path, web_predictor):
    from retinascreen.errors import ModelError
    from retinascreen.serving.segmenter import bundled_path
    from retinascreen.web import dispose

    try:
        bundled_path("vessels"), bundled_path("lesions")
    except ModelError as exc:
        pytest.skip(f"no bundled segmentation models here ({exc})")
    app = make_app(tmp_path / "instance", web_predictor, SEGMENTATION=True)
    try:
        client = signed_in(app)
        sid = screening_id(upload(client, fundus_png(3, size=192), "photo.png"))
        page = client.get(f"/screenings/{sid}").get_data(as_text=True)
        assert "Show vessels" in page and "Show lesions" in page
        # the bundled card: real masks, how many photos, and the measured figures
        assert "Lesion maps were learned from IDRiD segmentation training set, 54 photos" in page
        assert "synthetic photos only" not in page
        assert re.search(r"area under the precision-recall curve: [^<]*hard exudate 0\.\d\d", page)
    finally:
        dispose(app)


def test_lesion_flip_averaging_can_be_turned_off_for_speed(tmp_path, web_predictor, monkeypatch):
    """The bundled lesion card averages each map with the mirror image's (twice the model
    time); ``LESION_FLIP_AVERAGE`` (or ``RETINASCREEN_LESION_FLIP_AVERAGE=0``) serves one pass."""
    from retinascreen.web import dispose
    from retinascreen.web.segmentation import segmenters

    default = make_app(tmp_path / "default", web_predictor, SEGMENTATION=True)
    monkeypatch.setenv("RETINASCREEN_LESION_FLIP_AVERAGE", "0")
    fast = make_app(tmp_path / "fast", web_predictor, SEGMENTATION=True)
    try:
        assert default.config["LESION_FLIP_AVERAGE"] is True
        assert fast.config["LESION_FLIP_AVERAGE"] is False
        as_card, one_pass = segmenters(default)["lesions"], segmenters(fast)["lesions"]
        assert as_card is not None and one_pass is not None
        assert as_card.flip_average and not one_pass.flip_average
        assert segmenters(fast)["vessels"] is segmenters(default)["vessels"]
    finally:
        dispose(default)
        dispose(fast)
