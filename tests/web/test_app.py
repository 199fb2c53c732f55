"""The web pages through Flask's test client: accounts, uploads, results, history, reports."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import select, update

from retinascreen.result import SYNTHETIC_WARNING, Prediction
from retinascreen.web.models import AuditEvent, RateCounter, Screening, User
from tests.helpers.web import (
    PASSWORD,
    bad_inputs,
    dark_fundus_png,
    fundus_png,
    jpeg,
    login,
    make_app,
    post_form,
    register,
    stored_files,
    upload,
)

WARNING = "Model trained on synthetic data only: not for clinical use"


def rows(app, model=Screening):
    from retinascreen.web.db import session

    with app.app_context():
        return session().scalars(select(model)).all()


def signed_in(app, username="alice"):
    client = app.test_client()
    assert register(client, username).status_code == 302
    return client


def screening_id(response) -> int:
    assert response.status_code == 303, response.get_data(as_text=True)[-600:]
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_home_and_healthz_answer(web_app):
    client = web_app.test_client()
    home = client.get("/")
    assert home.status_code == 200
    assert "Diabetic retinopathy screening" in home.get_data(as_text=True)
    assert client.get("/healthz").get_json()["status"] == "ok"
    assert client.get("/static/app.css").status_code == 200
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/screenings/new",
        "/screenings",
        "/screenings/1",
        "/screenings/1/photo",
        "/screenings/1/heatmap.png",
        "/screenings/1/report.pdf",
    ],
)
def test_pages_need_sign_in(web_app, path):
    response = web_app.test_client().get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/auth/login")


def test_register_sign_out_and_sign_in(web_app):
    client = web_app.test_client()
    response = register(client, "alice")  # then signs in
    assert response.headers["Location"] == "/auth/login"
    assert "alice" in client.get("/screenings/new").get_data(as_text=True)
    stored = rows(web_app, User)[0]
    assert stored.password_hash.startswith("$argon2id$") and PASSWORD not in stored.password_hash

    assert client.get("/auth/logout").status_code == 405  # sign-out is POST only
    response = post_form(client, "/screenings/new", {}, to="/auth/logout")
    assert response.status_code == 302
    assert client.get("/screenings/new").status_code == 302

    wrong = login(client, "alice", "not the password")
    assert wrong.status_code == 401
    assert "Wrong username or password" in wrong.get_data(as_text=True)
    assert login(client, "alice").headers["Location"] == "/screenings/new"
    events = [(e.event, e.username) for e in rows(web_app, AuditEvent)]
    assert ("login_failure", "alice") in events and ("login_success", "alice") in events


def test_register_never_says_a_name_is_taken_and_refuses_weak_passwords(web_app):
    client = web_app.test_client()
    fresh = register(client, "alice", sign_in=False)
    fresh_page = client.get(fresh.headers["Location"]).get_data(as_text=True)
    taken = register(client, "alice", "another strong passphrase", sign_in=False)
    taken_page = client.get(taken.headers["Location"]).get_data(as_text=True)
    assert (fresh.status_code, fresh.headers["Location"]) == (302, "/auth/login")
    assert (taken.status_code, taken.headers["Location"]) == (302, "/auth/login")

    def neutral(page: str) -> str:
        return re.sub(r'name="csrf_token"[^>]*>', "", page)

    assert neutral(fresh_page) == neutral(taken_page) and "account is ready" in taken_page
    short = post_form(
        client, "/auth/register", {"username": "bob", "password": "short", "confirm": "short"}
    )
    assert short.status_code == 400 and "at least 10 characters" in short.get_data(as_text=True)
    weak = register(client, "bob", "password123", sign_in=False)
    page = weak.get_data(as_text=True)
    assert weak.status_code == 400 and "This is a very common password" in page
    assert [u.username for u in rows(web_app, User)] == ["alice"]


def test_sign_in_does_not_redirect_off_site(web_app):
    signed_in(web_app, "alice")
    client = web_app.test_client()
    response = post_form(
        client,
        "/auth/login",
        {"username": "alice", "password": PASSWORD},
        to="/auth/login?next=//evil.example/steal",
    )
    assert response.headers["Location"] == "/screenings/new"
    client = web_app.test_client()
    response = post_form(
        client,
        "/auth/login",
        {"username": "alice", "password": PASSWORD},
        to="/auth/login?next=/screenings",
    )
    assert response.headers["Location"] == "/screenings"


def test_session_cookie_is_httponly_and_samesite(web_app, tmp_path, web_predictor):
    client = web_app.test_client()

    def session_cookie(response) -> str:
        return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith("session="))

    register(client, "alice", sign_in=False)
    header = session_cookie(login(client, "alice"))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    for setting in ({"SESSION_COOKIE_SECURE": True}, {"HTTPS": True}):  # the old key still works
        secure_app = make_app(tmp_path / str(len(setting)), web_predictor, **setting)
        client = secure_app.test_client()
        register(client, "bob", sign_in=False)
        response = login(client, "bob")
        assert "Secure" in session_cookie(response)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in web_app.test_client().get("/").headers


def test_upload_shows_result_photo_heatmap_history_and_report(web_app):
    client = signed_in(web_app)
    sid = screening_id(upload(client, fundus_png(3), "photo.png", patient_id="PAT-001", eye="left"))
    page = client.get(f"/screenings/{sid}").get_data(as_text=True)
    stored = rows(web_app)[0]
    result = stored.result
    assert result["label"] in page and f"ICDR grade {result['grade']}" in page
    assert ("Referable" if result["referable"] else "Not referable") in page
    assert page.count('class="bar g') == 5  # one probability bar per grade
    assert "PAT-001" in page and "left" in page and WARNING in page
    assert "Gradable" in page and "Show heat map" in page
    photo = client.get(f"/screenings/{sid}/photo")
    assert photo.status_code == 200 and photo.data == fundus_png(3)  # kept byte for byte
    heat = client.get(f"/screenings/{sid}/heatmap.png")
    assert heat.status_code == 200 and heat.data.startswith(b"\x89PNG")
    # generated names only: never the uploaded name
    assert "photo.png" not in stored_files(web_app)
    assert re.fullmatch(r"[0-9a-f]{32}\.png", stored.photo_name)

    history = client.get("/screenings").get_data(as_text=True)
    assert "PAT-001" in history and f"/screenings/{sid}" in history and WARNING in history

    report = client.get(f"/screenings/{sid}/report.pdf")
    assert report.status_code == 200 and report.mimetype == "application/pdf"
    assert report.data.startswith(b"%PDF") and b"/Image" in report.data
    for text in (
        result["label"],
        "PAT-001",
        WARNING,
        "tiny-web-test",
        stored.model_sha256,
        "mini_xception",
        "Intended use",
    ):
        assert text.encode() in report.data, text


def test_stored_result_is_the_predictors_json_and_one_preprocessing_pass(
    web_app, web_predictor, monkeypatch
):
    from retinascreen.data import fundus
    from tests.helpers.counting import count_calls

    calls: dict[str, int] = {}
    full_size = (96, 96)  # fundus_png's side: crops of the uploaded photo itself
    count_calls(monkeypatch, fundus.find_disc, calls, "field searches")
    count_calls(
        monkeypatch,
        fundus.crop_square,
        calls,
        "crops",
        when=lambda rgb, *_: rgb.shape[:2] == full_size,
    )
    client = signed_in(web_app)
    sid = screening_id(upload(client, fundus_png(3), "photo.png"))
    # graded and heat-mapped from one crop (the other is the quality verdict's own square)
    assert calls == {"field searches": 1, "crops": 2}
    stored = rows(web_app)[0]
    assert stored.id == sid and stored.heatmap_name
    monkeypatch.undo()
    expected = web_predictor.predict(_png_array(fundus_png(3)))
    result = stored.result
    card = result.pop("model_card")
    assert result == expected.to_dict() and card["backbone"] == "mini_xception"
    assert result["warning"] == SYNTHETIC_WARNING
    assert stored.prediction == expected and isinstance(stored.prediction, Prediction)
    assert (stored.grade, stored.gradable, stored.model_name) == (
        expected.grade,
        expected.gradable,
        expected.model.name,
    )


def _png_array(data):
    from retinascreen.data.images import load_image

    return load_image(data)


def test_jpeg_upload_keeps_jpeg(web_app):
    from tests.helpers.drawing import draw_fundus

    client = signed_in(web_app)
    data = jpeg(draw_fundus(96, seed=2))
    sid = screening_id(upload(client, data, "eye.jpeg"))
    assert rows(web_app)[0].photo_name.endswith(".jpg")
    assert client.get(f"/screenings/{sid}/photo").data == data


def test_ungradable_photo_is_not_shown_as_a_grade(web_app):
    client = signed_in(web_app)
    sid = screening_id(upload(client, dark_fundus_png()))
    page = client.get(f"/screenings/{sid}").get_data(as_text=True)
    assert "Ungradable — retake the photograph" in page and "too dark" in page
    assert not re.search(r"ICDR grade \d", page) and "Show heat map" not in page
    assert "Ungradable" in client.get("/screenings").get_data(as_text=True)
    report = client.get(f"/screenings/{sid}/report.pdf").data
    assert (
        "Ungradable — retake the photograph".encode("cp1252") in report or b"Ungradable" in report
    )


@pytest.mark.parametrize("case", sorted(bad_inputs()))
def test_bad_upload_shows_the_form_again_and_stores_nothing(web_app, case):
    data, name, status = bad_inputs()[case]
    client = signed_in(web_app)
    response = upload(client, data, name, patient_id="P1")
    page = response.get_data(as_text=True)
    assert response.status_code == status
    assert 'enctype="multipart/form-data"' in page and 'role="alert"' in page
    message = re.search(r'id="upload-error">([^<]+)<', page).group(1)
    assert len(message) > 20
    assert rows(web_app) == [] and stored_files(web_app) == []
    # the server keeps serving
    assert screening_id(upload(client, fundus_png(1))) > 0


def test_upload_over_the_size_limit_is_refused(tmp_path, web_predictor):
    app = make_app(tmp_path / "small", web_predictor, MAX_CONTENT_LENGTH=20_000)
    client = signed_in(app)
    response = upload(client, fundus_png(0, size=96) + b"\0" * 30_000)
    assert response.status_code == 413
    assert "too large" in response.get_data(as_text=True)
    assert rows(app) == [] and stored_files(app) == []


def test_bad_patient_or_eye_is_refused(web_app):
    client = signed_in(web_app)
    response = upload(client, fundus_png(0), patient_id="x" * 65)
    assert response.status_code == 400 and rows(web_app) == []
    response = upload(client, fundus_png(0), eye="middle")
    assert response.status_code == 400 and rows(web_app) == []


def test_another_users_screening_answers_404(web_app):
    alice = signed_in(web_app, "alice")
    sid = screening_id(upload(alice, fundus_png(0), patient_id="ALICE-PATIENT"))
    bob = signed_in(web_app, "bob")
    for path in ("", "/photo", "/heatmap.png", "/report.pdf"):
        assert bob.get(f"/screenings/{sid}{path}").status_code == 404
        assert alice.get(f"/screenings/{sid}{path}").status_code == 200
    assert "ALICE-PATIENT" not in bob.get("/screenings").get_data(as_text=True)
    assert bob.get("/screenings/999").status_code == 404


def test_forms_without_csrf_token_are_refused(web_app):
    signed_in(web_app, "alice")
    client = web_app.test_client()
    response = client.post("/auth/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/screenings/new").status_code == 302  # not signed in
    client = signed_in(web_app, "bob")
    response = client.post(
        "/screenings/new",
        data={"image": (io.BytesIO(fundus_png(0)), "a.png")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and rows(web_app) == []
    assert client.post("/auth/logout").status_code == 400
    assert client.get("/screenings/new").status_code == 200  # still signed in


def test_sign_in_is_rate_limited_per_user_and_address(web_app):
    signed_in(web_app, "alice")
    signed_in(web_app, "bob")
    client = web_app.test_client()
    for _ in range(5):
        assert login(client, "alice", "wrong password!").status_code == 401
    blocked = login(client, "alice")  # even the right password waits
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 60, blocked.headers
    assert re.search(
        r"Too many attempts\. Wait \d+ (minutes|seconds)", blocked.get_data(as_text=True)
    )
    assert login(web_app.test_client(), "bob").status_code == 302  # other accounts unaffected

    from retinascreen.web.db import session

    with web_app.app_context():  # five minutes later
        db = session()
        db.execute(update(RateCounter).values(window_start=RateCounter.window_start - 900))
        db.commit()
    assert login(web_app.test_client(), "alice").status_code == 302


def test_history_search_and_pagination(tmp_path, web_predictor):
    import html
    import re

    app = make_app(tmp_path / "pages", web_predictor, HISTORY_PAGE_SIZE=2)
    client = signed_in(app)
    for i, patient in enumerate(["SMITH-1", "SMITH-2", "JONES-9", "SMITH-3"]):
        screening_id(upload(client, fundus_png(i), patient_id=patient))
    first = client.get("/screenings").get_data(as_text=True)
    assert "4 screenings" in first and "Page 1 of 2" in first
    assert "SMITH-3" in first and "JONES-9" in first and "SMITH-1" not in first  # newest first
    second = client.get("/screenings?page=2").get_data(as_text=True)
    assert "SMITH-1" in second and "JONES-9" not in second
    found = client.get("/screenings?q=smith").get_data(as_text=True)
    assert "3 screenings" in found and "JONES-9" not in found and "Page 1 of 2" in found
    # The pager's "Older" link keeps the search: page 2 of the matches, not of everything.
    older = html.unescape(re.search(r'rel="next" href="([^"]+)"', found).group(1))
    assert "q=smith" in older
    page_two = client.get(older).get_data(as_text=True)
    assert "Page 2 of 2" in page_two and "SMITH-1" in page_two and "JONES-9" not in page_two
    assert 'rel="prev"' in page_two and 'rel="next"' not in page_two
    assert "No screenings match" in client.get("/screenings?q=%25").get_data(as_text=True)


def test_unknown_page_is_a_friendly_404(web_app):
    response = web_app.test_client().get("/nowhere")
    assert response.status_code == 404 and "Not found" in response.get_data(as_text=True)


def test_pages_say_what_the_model_was_trained_on_from_its_card(web_app, web_predictor):
    client = signed_in(web_app)
    card = web_predictor.card
    page = client.get("/screenings/new").get_data(as_text=True)
    assert "trained on" in page and card.training_data.split(";")[0] in page
    assert 'href="/static/sample-retina.jpg"' in page
    assert client.get("/static/sample-retina.jpg").status_code == 200
    sid = screening_id(upload(client, fundus_png(4), "photo.png"))
    shown = client.get(f"/screenings/{sid}").get_data(as_text=True)
    assert card.training_data.split(";")[0] in shown and card.intended_use in shown
