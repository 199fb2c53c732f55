"""A real ``retinascreen serve`` (gunicorn, 2 workers) on a free loopback port, for HTTP tests.

``with live_server(tmp_path, model_path) as server:`` creates an administrator, starts the
server with the tiny test model on SQLite in ``tmp_path`` (or ``database_url``), waits until
every worker has loaded the model, and stops it (SIGTERM, then SIGKILL) afterwards.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USERNAME = "chief"
PASSWORD = "Quillet-Marrow-Vantage-8412"
READY_RE = re.compile(r"retinascreen worker (\d+) ready")
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, data) in files.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


@dataclass
class LiveServer:
    port: int
    instance: Path
    model_path: Path
    database_url: str | None
    workers: int
    args: Sequence[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment (``RETINASCREEN_<KEY>`` settings, as an operator sets them)."""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_file(self) -> Path:
        return self.instance / "retinascreen.db"

    @property
    def photos(self) -> Path:
        return self.instance / "photos"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- process ----------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> None:
        command = [
            sys.executable,
            "-m",
            "retinascreen",
            "serve",
            "--model",
            str(self.model_path),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--instance",
            str(self.instance),
            *(["--database-url", self.database_url] if self.database_url else []),
            *self.args,
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.wait_for_workers(self.workers, timeout=timeout)

    def ready_workers(self) -> set[int]:
        """Pids of the live workers that have loaded the model."""
        ready = {int(pid) for pid in READY_RE.findall(self.output())}
        return ready & set(self.worker_pids())

    def wait_for_workers(self, count: int, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while len(self.ready_workers()) < count:
            assert self.process is not None and self.process.poll() is None, self.output()
            assert time.monotonic() < deadline, "workers did not come up:\n" + self.output()
            time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        """The gunicorn master's child processes."""
        assert self.process is not None
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except FileNotFoundError:
            return []

    def kill_workers(self) -> list[int]:
        """``kill -9`` every worker (gunicorn's master starts new ones)."""
        pids = self.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def restart_workers(self, timeout: float = 240) -> None:
        """Kill every worker and wait until their replacements are ready."""
        old = set(self.kill_workers())
        deadline = time.monotonic() + timeout
        while len(self.ready_workers() - old) < self.workers:
            assert time.monotonic() < deadline, "workers did not come back:\n" + self.output()
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    # -- HTTP -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        """One request on a fresh connection; never raises for an HTTP status."""
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        if self.cookies:
            headers.setdefault("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        start = time.monotonic()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            for value in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return Reply(response.status, dict(response.headers), data, time.monotonic() - start)
        finally:
            connection.close()

    def token(self, username: str = USERNAME, password: str = PASSWORD) -> str:
        reply = self.request(
            "POST", "/api/v1/tokens", json_body={"username": username, "password": password}
        )
        assert reply.status == 201, reply.text
        return str(reply.json()["token"])

    def api_upload(self, token: str, data: bytes, name: str = "eye.png", **fields: str) -> Reply:
        body, content_type = multipart(fields, {"image": (name, data)})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        return self.request("POST", "/api/v1/screenings", body=body, headers=headers)

    def csrf(self, page: str) -> str:
        match = CSRF_RE.search(self.request("GET", page).text)
        assert match, f"no CSRF token on {page}"
        return match.group(1)

    def sign_in(self, username: str = USERNAME, password: str = PASSWORD) -> None:
        """Sign in through the login form (the session cookie is kept for later requests)."""
        fields = {"csrf_token": self.csrf("/auth/login"), "username": username}
        fields["password"] = password
        body, content_type = multipart(fields, {})
        reply = self.request(
            "POST", "/auth/login", body=body, headers={"Content-Type": content_type}
        )
        assert reply.status in (302, 303), reply.text

    def form_upload(self, data: bytes, name: str = "eye.png", timeout: float = 60) -> Reply:
        """Upload through the signed-in web form."""
        fields = {"csrf_token": self.csrf("/screenings/new")}
        body, content_type = multipart(fields, {"image": (name, data)})
        return self.request(
            "POST",
            "/screenings/new",
            body=body,
            headers={"Content-Type": content_type},
            timeout=timeout,
        )


def create_admin(instance: Path, database_url: str | None) -> None:
    command = [sys.executable, "-m", "retinascreen", "admin", "create", USERNAME]
    command += ["--password-stdin", "--instance", str(instance)]
    if database_url:
        command += ["--database-url", database_url]
    done = subprocess.run(command, input=PASSWORD + "\n", text=True, capture_output=True)
    assert done.returncode == 0, done.stderr


@contextmanager
def live_server(
    folder: Path,
    model_path: Path,
    *,
    database_url: str | None = None,
    workers: int = 2,
    args: Sequence[str] = (),
) -> Iterator[LiveServer]:
    """A started server with an administrator ``chief``; stopped and cleaned up afterwards."""
    instance = folder / "instance"
    create_admin(instance, database_url)
    server = LiveServer(
        port=free_port(),
        instance=instance,
        model_path=model_path,
        database_url=database_url,
        workers=workers,
        args=args,
        log_path=folder / "server.log",
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


class SlowClient(threading.Thread):
    """Sends a request's headers, then its body at one byte a second, until answered or ``seconds``.

    ``status`` is the answer's status (None if none came: the server kept waiting).
    """

    def __init__(self, port: int, token: str, seconds: float, length: int = 100_000) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.seconds, self.length = port, token, seconds, length
        self.status: int | None = None
        self.answered_after: float | None = None

    def run(self) -> None:
        start = time.monotonic()
        head = (
            f"POST /api/v1/screenings HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Authorization: Bearer {self.token}\r\n"
            "Content-Type: multipart/form-data; boundary=slow\r\n"
            f"Content-Length: {self.length}\r\n\r\n"
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=self.seconds) as sock:
            sock.sendall(head.encode())
            sock.settimeout(1.0)
            body = b"--slow\r\n" + b"x" * self.length
            for byte in body:
                if time.monotonic() - start > self.seconds:
                    return
                try:
                    sock.sendall(bytes([byte]))
                    answer = sock.recv(64)
                except TimeoutError:
                    continue  # no answer yet: one more byte
                except OSError:  # the server closed: read what it said, if anything
                    try:
                        answer = sock.recv(64)
                    except OSError:
                        answer = b""
                if answer.startswith(b"HTTP/1."):
                    self.status = int(answer.split()[1])
                self.answered_after = time.monotonic() - start
                return


def healthz_latency(port: int, timeout: float = 10) -> float:
    """Seconds one GET /healthz takes on a fresh connection (``timeout`` if it does not answer)."""
    start = time.monotonic()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        connection.close()
    except OSError:
        return timeout
    return time.monotonic() - start
