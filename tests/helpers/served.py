"""A live ``retinascreen serve`` driven with ``requests`` (cookies, headers, forms).

The process is :class:`tests.helpers.live_server.LiveServer`'s (real gunicorn, 2 workers, SQLite
in a temporary folder); this module adds the browser-like helpers the account tests need.

``served(tmp_path, model, env={...})`` is a context manager yielding a :class:`Served` with the
base URL, the instance folder and the database file; the server stops (SIGTERM) on exit.
Settings go in as ``RETINASCREEN_<KEY>`` environment variables, as an operator would set them.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.helpers.live_server import CSRF_RE, LiveServer, free_port


@dataclass
class Served:
    base: str
    instance: Path
    process: subprocess.Popen
    log: Path
    """gunicorn's output (access log included)."""

    @property
    def database(self) -> Path:
        return self.instance / "retinascreen.db"

    def url(self, path: str) -> str:
        return self.base + path

    def form(self, browser: requests.Session, page: str, data: dict, **kw) -> requests.Response:
        """GET ``page`` for its CSRF token, then POST ``data`` to it (redirects not followed)."""
        match = CSRF_RE.search(browser.get(self.url(page), timeout=30).text)
        assert match, f"no CSRF token on {page}"
        return browser.post(
            self.url(page),
            data={"csrf_token": match.group(1), **data},
            allow_redirects=False,
            timeout=60,
            **kw,
        )

    def sign_in(self, username: str, password: str, **headers: str) -> requests.Session:
        browser = requests.Session()
        browser.headers.update(headers)
        response = self.form(browser, "/auth/login", {"username": username, "password": password})
        assert response.status_code == 302, response.text[-500:]
        return browser


@contextlib.contextmanager
def served(
    tmp_path: Path,
    model: Path,
    *,
    users: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    workers: int = 2,
) -> Iterator[Served]:
    """Start the server with ``users`` (name -> password, created as administrators first)."""
    from retinascreen.web.accounts import create_admin

    instance = tmp_path / "instance"
    for username, password in (users or {}).items():
        create_admin(username, password, instance=instance)
    server = LiveServer(
        port=free_port(),
        instance=instance,
        model_path=model,
        database_url=None,
        workers=workers,
        args=(),
        log_path=tmp_path / "server.log",
        env=dict(env or {}),
    )
    try:
        server.start()  # waits until every worker has loaded the model
        assert server.process is not None
        yield Served(server.base, instance, server.process, server.log_path)
    finally:
        server.stop()
