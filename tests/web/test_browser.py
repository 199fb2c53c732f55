"""End to end in a real browser (Debian chromium driven by Playwright) against a real server.

Screenshots go to test-output/ so a person can look at the pages.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers.web import PASSWORD, dark_fundus_png, face_png, fundus_png, make_app

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("RETINASCREEN_CHROMIUM", "/usr/bin/chromium")
OUT = Path(__file__).resolve().parents[2] / "test-output"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def served(app) -> Iterator[str]:
    """``app`` on a threaded Werkzeug server on loopback; yields its base URL."""
    from werkzeug.serving import make_server

    from retinascreen.web import dispose

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(5)
        dispose(app)


@pytest.fixture
def server(tmp_path, web_predictor):
    with served(make_app(tmp_path / "instance", web_predictor, TESTING=False)) as url:
        yield url


def sign_in(page, username: str) -> None:
    """Sign in on the page shown (the sign-in form) and land on the upload page."""
    from playwright.sync_api import expect

    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/screenings/new$"))


@pytest.fixture
def page():
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        if os.environ.get("CI"):
            pytest.fail(f"chromium not found at {CHROMIUM} (run .ci/services.sh)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    OUT.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        yield context.new_page()
        context.close()
        browser.close()


def test_register_upload_result_history_report(server, page, tmp_path):
    from playwright.sync_api import expect

    photo = tmp_path / "right-eye.png"
    photo.write_bytes(fundus_png(seed=11, size=128))

    page.goto(server + "/")
    page.screenshot(path=OUT / "01-home.png", full_page=True)
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill("dr_jones")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.screenshot(path=OUT / "02-register.png", full_page=True)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))  # never says whether the name was free
    expect(page.get_by_role("status").first).to_contain_text("account is ready")
    sign_in(page, "dr_jones")
    expect(page.get_by_role("alert").first).to_contain_text("synthetic data")

    page.get_by_label("Fundus photograph").set_input_files(str(photo))
    expect(page.locator("[data-file-name]")).to_contain_text("right-eye.png")
    page.get_by_label("Patient id (optional)").fill("PX-0042")
    page.get_by_label("Eye (optional)").select_option("right")
    page.screenshot(path=OUT / "03-upload.png", full_page=True)
    page.get_by_role("button", name="Grade photograph").click()
    expect(page).to_have_url(re.compile(r"/screenings/\d+$"))
    expect(page.locator("[data-verdict]")).to_be_visible()
    expect(
        page.get_by_text("Model trained on synthetic data only: not for clinical use")
    ).to_be_visible()
    expect(page.locator("svg.bar")).to_have_count(5)
    assert page.locator("img.photo").evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=OUT / "04-result.png", full_page=True)

    page.get_by_text("Show heat map").click()
    expect(page.locator("img.heatmap")).to_be_visible()
    expect(page.locator("img.photo")).to_be_hidden()
    assert page.locator("img.heatmap").evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=OUT / "05-result-heatmap.png", full_page=True)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download PDF report").click()
    report = tmp_path / "report.pdf"
    info.value.save_as(report)
    assert report.read_bytes().startswith(b"%PDF") and b"PX-0042" in report.read_bytes()
    shutil.copy(report, OUT / "06-report.pdf")

    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("cell", name="PX-0042")).to_be_visible()
    page.screenshot(path=OUT / "07-history.png", full_page=True)

    # bad input: the form again with the message
    bad = tmp_path / "portrait.png"
    bad.write_bytes(face_png())
    page.get_by_role("link", name="New screening").click()
    page.get_by_label("Fundus photograph").set_input_files(str(bad))
    page.get_by_role("button", name="Grade photograph").click()
    expect(page.locator("#upload-error")).to_contain_text("does not look like a fundus")
    page.screenshot(path=OUT / "08-bad-input.png", full_page=True)

    dark = tmp_path / "dark.png"
    dark.write_bytes(dark_fundus_png())
    page.get_by_label("Fundus photograph").set_input_files(str(dark))
    page.get_by_role("button", name="Grade photograph").click()
    expect(page.get_by_text("Ungradable — retake the photograph")).to_be_visible()
    page.screenshot(path=OUT / "09-ungradable.png", full_page=True)

    # sign out, then sign back in
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("link", name="Sign in").first).to_be_visible()
    page.goto(server + "/auth/login")
    sign_in(page, "dr_jones")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(server + "/screenings")
    page.screenshot(path=OUT / "10-history-phone.png", full_page=True)


@pytest.fixture
def seg_server(tmp_path, web_predictor, segmentation_models):
    app = make_app(
        tmp_path / "instance",
        web_predictor,
        TESTING=False,
        SEGMENTATION=True,
        VESSEL_MODEL=str(segmentation_models["vessels"]),
        LESION_MODEL=str(segmentation_models["lesions"]),
    )
    with served(app) as url:
        yield url


def test_overlay_toggles_in_a_real_browser(seg_server, page, tmp_path):
    from playwright.sync_api import expect

    photo = tmp_path / "eye.png"
    photo.write_bytes(fundus_png(3, size=192))
    page.goto(seg_server + "/auth/register")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/auth/login$"))
    sign_in(page, "alice")
    page.get_by_label("Fundus photograph").set_input_files(str(photo))
    page.get_by_role("button", name="Grade photograph").click()
    expect(page).to_have_url(re.compile(r"/screenings/\d+$"))
    expect(page.locator("img.photo")).to_be_visible()
    expect(page.locator("img.vessels")).to_be_hidden()
    page.get_by_text("Show vessels").click()
    expect(page.locator("img.vessels")).to_be_visible()
    expect(page.locator("img.photo")).to_be_hidden()
    expect(page.locator("img.heatmap")).to_be_hidden()
    page.get_by_text("Show lesions").click()
    expect(page.locator("img.lesions")).to_be_visible()
    expect(page.locator("img.vessels")).to_be_visible()  # side by side
    expect(page.get_by_text("Lesion maps were learned from synthetic photos only")).to_be_visible()
    assert page.locator("img.lesions").evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=OUT / "07-result-overlays.png", full_page=True)
    page.get_by_text("Show vessels").click()
    page.get_by_text("Show lesions").click()
    expect(page.locator("img.photo")).to_be_visible()
