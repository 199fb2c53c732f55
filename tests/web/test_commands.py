"""The web commands: ``admin create``, ``demo --check`` and ``serve`` (a real gunicorn)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from retinascreen.cli import main
from retinascreen.models import engines as inference
from tests.helpers.web import PASSWORD, fundus_png, login, make_app


def admin_create(monkeypatch, instance, username, password=PASSWORD):
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    return main(["admin", "create", username, "--password-stdin", "--instance", str(instance)])


def test_admin_create_makes_an_administrator(tmp_path, monkeypatch, capsys, web_predictor):
    instance = tmp_path / "instance"
    assert admin_create(monkeypatch, instance, "chief") == 0
    assert "created administrator 'chief'" in capsys.readouterr().out
    app = make_app(instance, web_predictor)
    assert login(app.test_client(), "chief").status_code == 302
    from retinascreen.web.db import session
    from retinascreen.web.models import User

    with app.app_context():
        assert session().query(User).filter_by(username="chief").one().is_admin


@pytest.mark.parametrize(
    "username,password,message",
    [
        ("chief", PASSWORD, "already exists"),
        ("x", PASSWORD, "username"),
        ("other", "short", "at least 10 characters"),
    ],
)
def test_admin_create_refuses_bad_requests(
    tmp_path, monkeypatch, capsys, username, password, message
):
    instance = tmp_path / "instance"
    assert admin_create(monkeypatch, instance, "chief") == 0
    capsys.readouterr()
    assert admin_create(monkeypatch, instance, username, password) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and "Traceback" not in err


def test_admin_create_without_terminal_needs_password_stdin(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["admin", "create", "chief", "--instance", str(tmp_path)]) == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_demo_check_runs_the_product_and_is_idempotent(
    tmp_path, monkeypatch, capsys, web_model_path
):
    demo_dir = tmp_path / "demo_model"
    demo_dir.mkdir()
    shutil.copy(web_model_path, demo_dir / "demo.keras")
    monkeypatch.setattr(inference, "DEMO_DIR", demo_dir)
    instance = tmp_path / "instance"
    assert main(["demo", "--check", "--instance", str(instance)]) == 0
    first = capsys.readouterr().out
    assert "demo check ok" in first and "not for clinical use" in first
    password = first.rsplit("demo / ", 1)[1].strip()
    assert main(["demo", "--check", "--instance", str(instance)]) == 0
    assert f"demo / {password}" in capsys.readouterr().out  # same account, same password


def test_demo_without_its_model_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(inference, "DEMO_DIR", tmp_path / "missing")
    assert main(["demo", "--check", "--instance", str(tmp_path / "instance")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "demo model is missing" in err and "serve --model" in err
    assert len(err.strip().splitlines()) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_runs_gunicorn_workers_that_grade_uploads(tmp_path, monkeypatch, web_model_path):
    instance = tmp_path / "instance"
    assert admin_create(monkeypatch, instance, "chief") == 0
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "retinascreen",
            "serve",
            "--model",
            str(web_model_path),
            "--port",
            str(port),
            "--workers",
            "2",
            "--instance",
            str(instance),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                    assert json.load(response)["status"] == "ok"
                break
            except OSError:  # refused, reset or timed out while workers load the model
                assert process.poll() is None, process.stdout.read()
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.5)
        request = urllib.request.Request(
            base + "/api/v1/tokens",
            data=json.dumps({"username": "chief", "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            token = json.load(response)["token"]
        boundary = "b0undary"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="e.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + fundus_png(5)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        request = urllib.request.Request(
            base + "/api/v1/screenings",
            data=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert (
                response.status == 201 and json.load(response)["model"]["name"] == "tiny-web-test"
            )
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    assert "Booting worker" in output and output.count("Booting worker") >= 2
    assert (instance / "retinascreen.db").exists()
