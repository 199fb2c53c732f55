"""Sessions, abuse limits and tokens against a real ``retinascreen serve`` (gunicorn, 2 workers).

One server for the module; each test starts with empty limit counters.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers.served import served
from tests.helpers.web import PASSWORD

USERS = {"alice": PASSWORD, "bob": PASSWORD, "carol": PASSWORD}


@pytest.fixture(scope="module")
def server(tmp_path_factory, web_model_path):
    with served(tmp_path_factory.mktemp("live"), web_model_path, users=USERS) as live:
        yield live


@pytest.fixture
def live(server):
    with sqlite3.connect(server.database) as db:
        db.execute("DELETE FROM rate_counters")
    return server


def token(live, username="alice", password=PASSWORD) -> str:
    response = requests.post(
        live.url("/api/v1/tokens"), json={"username": username, "password": password}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()["token"]


def failures(live, username: str) -> int:
    """How many passwords were actually checked and found wrong (the audit log)."""
    with sqlite3.connect(live.database) as db:
        query = "SELECT count(*) FROM audit_events WHERE event='login_failure' AND username=?"
        return db.execute(query, (username,)).fetchone()[0]


def test_a_cookie_copied_before_sign_out_no_longer_opens_screenings(live):
    browser = live.sign_in("alice", PASSWORD, **{"User-Agent": "browser-A"})
    cookie = browser.cookies["session"]

    def with_copy(user_agent: str) -> requests.Response:
        return requests.get(
            live.url("/screenings"),
            cookies={"session": cookie},
            headers={"User-Agent": user_agent},
            allow_redirects=False,
            timeout=30,
        )

    assert with_copy("browser-A").status_code == 200
    assert with_copy("curl/8").status_code == 302  # another browser: strong session protection
    page = browser.get(live.url("/screenings"), timeout=30).text
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    response = browser.post(
        live.url("/auth/logout"), data={"csrf_token": csrf}, allow_redirects=False, timeout=30
    )
    assert response.status_code == 302
    copied = with_copy("browser-A")
    assert copied.status_code == 302 and copied.headers["Location"].startswith("/auth/login")


def test_a_password_change_ends_other_sessions_and_tokens(live):
    new_password = "violet tractor lantern " + uuid.uuid4().hex[:6]
    here = live.sign_in("carol", USERS["carol"])
    elsewhere = live.sign_in("carol", USERS["carol"])
    api = token(live, "carol", USERS["carol"])
    response = live.form(
        here,
        "/auth/password",
        {"current": USERS["carol"], "password": new_password, "confirm": new_password},
    )
    assert response.status_code == 302, response.text[-800:]
    USERS["carol"] = new_password
    assert here.get(live.url("/screenings"), allow_redirects=False).status_code == 200
    assert elsewhere.get(live.url("/screenings"), allow_redirects=False).status_code == 302
    listing = requests.get(
        live.url("/api/v1/screenings"), headers={"Authorization": f"Bearer {api}"}, timeout=30
    )
    assert listing.status_code == 401
    assert token(live, "carol", new_password)


def test_40_parallel_wrong_passwords_are_checked_at_most_5_times(live):
    before = failures(live, "alice")

    def attempt(i: int) -> requests.Response:
        body = {"username": "alice", "password": f"wrong guess number {i}"}
        return requests.post(live.url("/api/v1/tokens"), json=body, timeout=60)

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(attempt, range(40)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: 5, 429: 35}, statuses
    assert failures(live, "alice") - before == 5  # 5 password hashes checked, not 11
    limited = [a for a in answers if a.status_code == 429]
    assert all(int(a.headers["Retry-After"]) >= 1 for a in limited)
    assert all("Too many attempts" in a.json()["error"] for a in limited)


def test_a_30_username_spray_from_one_address_stops_at_20(live):
    statuses = [
        requests.post(
            live.url("/api/v1/tokens"),
            json={"username": f"spray{i:02d}", "password": "Summer2026!"},
            timeout=30,
        ).status_code
        for i in range(30)
    ]
    assert statuses == [401] * 20 + [429] * 10


def test_a_spoofed_x_forwarded_for_is_ignored_without_trusted_proxies(live):
    statuses = [
        requests.post(
            live.url("/api/v1/tokens"),
            json={"username": "bob", "password": "not bob's password"},
            headers={"X-Forwarded-For": f"203.0.113.{i}"},
            timeout=30,
        ).status_code
        for i in range(7)
    ]
    assert statuses == [401] * 5 + [429] * 2
    with sqlite3.connect(live.database) as db:
        ips = {row[0] for row in db.execute("SELECT ip FROM audit_events WHERE username='bob'")}
    assert ips == {"127.0.0.1"}


def test_api_reads_succeed_while_another_process_holds_the_write_lock(live):
    bearer = {"Authorization": f"Bearer {token(live, 'bob')}"}
    locker = sqlite3.connect(live.database, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process writing, e.g. a long upload commit
    try:
        started = time.monotonic()
        response = requests.get(live.url("/api/v1/screenings"), headers=bearer, timeout=25)
        elapsed = time.monotonic() - started
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert response.status_code == 200 and elapsed < 5, (response.status_code, elapsed)
    assert response.headers["Cache-Control"] == "no-store"


def test_access_log_has_no_query_strings_and_patient_pages_are_not_cached(live):
    browser = live.sign_in("bob", PASSWORD)
    response = browser.get(live.url("/screenings?q=PATIENT-4711"), timeout=30)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    time.sleep(0.5)  # the access log line is written after the response
    log = live.log.read_text()
    assert '"GET /screenings HTTP/1.1" 200' in log
    assert "PATIENT-4711" not in log
