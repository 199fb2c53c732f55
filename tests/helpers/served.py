"""A live ``retinascreen serve`` (real gunicorn, 2 workers, SQLite in a temporary folder).

``served(tmp_path, model, env={...})`` is a context manager yielding a :class:`Served` with the
base URL, the instance folder and the database file; the server stops (SIGTERM) on exit.
Settings go in as ``RETINASCREEN_<KEY>`` environment variables, as an operator would set them.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    port = free_port()
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    command = [sys.executable, "-m", "retinascreen", "serve", "--model", str(model)]
    command += ["--port", str(port), "--workers", str(workers), "--instance", str(instance)]
    log = tmp_path / "server.log"
    with log.open("w") as output:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment
        )
    server = Served(f"http://127.0.0.1:{port}", instance, process, log)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(server.url("/healthz"), timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # refused while the workers start
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.3)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
