"""The screening programme's loop in a real browser (Debian chromium driven by Playwright): a
clinic user uploads a visit of four photos (two per eye, one ungradable), the outcome page says
"retake" for that eye; a grader opens the queue, overrides a grade; the outcome and the
agreement page change; the patient letter's text is checked.

Screenshots at desktop and phone width go to test-output/visits/ for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.pdf import pdf_text
from tests.helpers.web import dark_fundus_png, fundus_png, make_app, register
from tests.web.test_browser import OUT, page, served, sign_in  # noqa: F401 (fixture)
from tests.web.test_visits import set_role

pytestmark = pytest.mark.browser
SHOTS = OUT / "visits"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


@pytest.fixture
def programme(tmp_path, web_predictor):
    app = make_app(tmp_path / "instance", web_predictor, TESTING=False)
    for name, role, site in (("nurse", "clinic", "north"), ("grace", "grader", None)):
        register(app.test_client(), name, sign_in=False)
        set_role(app, name, role, site)
    with served(app) as url:
        yield url


def shoot(page, name: str) -> None:  # noqa: F811
    """A full-page screenshot at desktop width, then at phone width."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / f"{name}-desktop.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=SHOTS / f"{name}-phone.png", full_page=True)
    page.set_viewport_size(DESKTOP)


def sign_out(page) -> None:  # noqa: F811
    page.get_by_role("button", name="Sign out").click()


def test_visit_review_agreement_and_letter_in_a_real_browser(programme, page, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    photos = {}
    for slot, data in (
        ("right_macula", fundus_png(1, size=128)),
        ("right_disc", fundus_png(2, size=128)),
        ("left_macula", dark_fundus_png(size=128)),
        ("left_disc", fundus_png(3, size=128)),
    ):
        photos[slot] = tmp_path / f"{slot}.png"
        photos[slot].write_bytes(data)

    page.goto(programme + "/auth/login")
    sign_in(page, "nurse")
    page.get_by_role("link", name="Visits").click()
    page.get_by_role("link", name="New visit").click()
    page.get_by_label("Patient id").fill("PX-0042")
    page.get_by_label("Visit date").fill("2026-11-30")
    expect(page.get_by_label("Site")).to_have_value("north")
    page.get_by_label("Right eye, macula-centred").set_input_files(str(photos["right_macula"]))
    page.get_by_label("Right eye, disc-centred").set_input_files(str(photos["right_disc"]))
    page.get_by_label("Left eye, macula-centred").set_input_files(str(photos["left_macula"]))
    page.get_by_label("Left eye, disc-centred").set_input_files(str(photos["left_disc"]))
    shoot(page, "01-new-visit")
    page.get_by_role("button", name="Grade visit").click()
    expect(page).to_have_url(re.compile(r"/visits/[0-9a-f]{32}$"))
    visit_url = page.url

    left = page.locator('[data-eye="left"]')
    expect(left.locator("[data-retake]")).to_contain_text("Retake")
    expect(left.locator("[data-retake]")).to_contain_text("macula-centred")
    expect(page.locator('[data-eye="right"] [data-retake]')).to_have_count(0)
    expect(left.get_by_text("ungradable — retake")).to_be_visible()  # the dark photo
    expect(page.locator("figure.visit-photo img")).to_have_count(4 + 3)  # 3 heat maps
    before = page.locator("[data-outcome-summary]").inner_text()
    expect(page.locator("[data-decided-by]")).to_contain_text("the machine's grade")
    shoot(page, "02-visit-outcome")
    sign_out(page)

    # the grader: queue, both eyes side by side, override the right eye
    page.goto(programme + "/auth/login")
    sign_in(page, "grace")
    page.goto(programme + "/agreement")
    expect(page.locator('[data-group="all"] [data-reviewed]')).to_have_text("0")
    page.get_by_role("link", name="Review queue").click()
    expect(page.get_by_text("left: no gradable macula photo")).to_be_visible()
    shoot(page, "03-review-queue")
    page.get_by_role("link", name="2026-11-30").click()
    expect(page.locator('[data-eye="right"]')).to_be_visible()
    expect(page.locator('[data-eye="left"]')).to_be_visible()
    box_right = page.locator('[data-eye="right"]').first.bounding_box()
    box_left = page.locator('[data-eye="left"]').first.bounding_box()
    assert box_right and box_left and box_left["x"] > box_right["x"] + 100  # side by side
    shoot(page, "04-review")
    page.get_by_label("Right eye grade").select_option("3")
    page.get_by_label("Note").fill("IRMA in two quadrants")
    page.get_by_role("button", name="Save review").click()
    expect(page).to_have_url(visit_url)
    expect(page.locator("[data-outcome-summary]")).to_have_text("refer (soon)")
    assert before != "refer (soon)"
    right = page.locator('[data-eye="right"]')
    expect(right.locator("[data-grader]")).to_contain_text("grade 3 — grace")
    expect(right.locator("[data-machine]")).to_contain_text("grade")
    expect(page.locator("[data-decided-by]")).to_contain_text("grader grace")
    shoot(page, "05-visit-after-review")

    # the form records both eyes: the right one changed, the left one confirmed as preselected
    expect(page.locator('[data-eye="left"] [data-grader]')).to_contain_text("retake — grace")
    expect(page.locator('[data-eye="left"] [data-retake]')).to_be_visible()
    page.goto(programme + "/agreement")
    expect(page.locator('[data-group="all"] [data-reviewed]')).to_have_text("2")
    expect(page.locator('[data-group="all"] [data-exact]')).to_have_text("50%")
    expect(page.locator('[data-group="site north"]')).to_be_visible()
    expect(page.locator('[data-group="month 2026-11"]')).to_be_visible()
    shoot(page, "06-agreement")
    with page.expect_download() as info:
        page.get_by_role("link", name="Download CSV").click()
    csv_text = Path(info.value.path()).read_text(encoding="utf-8")
    assert csv_text.splitlines()[0].startswith("group,value,visits,") and "site,north," in csv_text

    page.goto(visit_url)
    with page.expect_download() as info:
        page.get_by_role("link", name="Patient letter (PDF)").click()
    letter = Path(info.value.path()).read_bytes()
    (SHOTS / "08-letter.pdf").write_bytes(letter)
    text = " ".join(pdf_text(letter).split())
    assert "Your diabetic eye screening result" in text
    assert "Your right eye" in text and "should see soon" in text
    assert "Your left eye" in text and "not clear enough to read" in text
    assert "We are referring you soon" in text
    with page.expect_download() as info:
        page.get_by_role("link", name="Clinical report (PDF)").click()
    report = Path(info.value.path()).read_bytes()
    (SHOTS / "09-clinical-report.pdf").write_bytes(report)
    assert "IRMA in two quadrants" in " ".join(pdf_text(report).split())  # the grader's note
    page.get_by_role("link", name="Visits").click()
    shoot(page, "07-visits")
