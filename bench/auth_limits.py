"""Accounts and abuse limits against a live ``retinascreen serve`` (2 workers, SQLite).

Prints, for the code on ``PYTHONPATH``: how often 40 parallel wrong passwords were checked, where
a 30-username spray from one address was stopped, how many of 15 token requests succeeded, what
a cookie copied before sign-out opens, how an API read fares while another process holds the
SQLite write lock, and whether a query string reaches the access log (issue 12, items 2 and 7).

    PYTHONPATH=src python bench/auth_limits.py MODEL.keras
"""

from __future__ import annotations

import sqlite3
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.served import CSRF_RE, served  # noqa: E402

PASSWORD = "correct horse battery"


def main(model: Path) -> None:
    users = {"alice": PASSWORD, "bob": PASSWORD, "carol": PASSWORD}
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp), model, users=users) as live:

        def reset() -> None:
            with sqlite3.connect(live.database) as db, suppress(sqlite3.OperationalError):
                db.execute("DELETE FROM rate_counters")  # absent in code without counters

        def post(body: dict) -> requests.Response:
            return requests.post(live.url("/api/v1/tokens"), json=body, timeout=60)

        def wrong(i: int) -> requests.Response:
            return post({"username": "alice", "password": f"wrong {i}"})

        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(wrong, range(40)))
        print("40 parallel wrong passwords:", dict(Counter(a.status_code for a in answers)))
        with sqlite3.connect(live.database) as db:
            query = "SELECT count(*) FROM audit_events WHERE event = 'login_failure'"
            print("  passwords checked:", db.execute(query).fetchone()[0])
        reset()
        spray = [
            post({"username": f"spray{i}", "password": "Summer2026!"}).status_code
            for i in range(30)
        ]
        first = spray.index(429) + 1 if 429 in spray else None
        print("30-username spray:", dict(Counter(spray)), "first 429 at attempt", first)
        reset()
        tokens = [post({"username": "bob", "password": PASSWORD}).status_code for _ in range(15)]
        print("15 token requests:", dict(Counter(tokens)))
        reset()
        browser = requests.Session()
        csrf = CSRF_RE.search(browser.get(live.url("/auth/login")).text).group(1)  # type: ignore[union-attr]
        form = {"csrf_token": csrf, "username": "bob", "password": PASSWORD}
        browser.post(live.url("/auth/login"), data=form)
        cookie = browser.cookies["session"]
        csrf = CSRF_RE.search(browser.get(live.url("/screenings")).text).group(1)  # type: ignore[union-attr]
        browser.post(live.url("/auth/logout"), data={"csrf_token": csrf}, allow_redirects=False)
        copied = requests.get(
            live.url("/screenings"), cookies={"session": cookie}, allow_redirects=False
        )
        print("cookie copied before sign-out -> /screenings:", copied.status_code)
        secret = post({"username": "carol", "password": PASSWORD}).json().get("token")
        lock = sqlite3.connect(live.database, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        try:
            read = requests.get(
                live.url("/api/v1/screenings"),
                headers={"Authorization": f"Bearer {secret}"},
                timeout=60,
            )
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        print(
            f"API read under a write lock: {read.status_code} in {time.monotonic() - started:.1f} s"
        )
        browser.get(live.url("/screenings?q=PATIENT-4711"))
        time.sleep(0.5)
        print("query string in the access log:", "PATIENT-4711" in live.log.read_text())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
