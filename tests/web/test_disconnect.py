"""An upload whose client has hung up is not decoded, graded or stored (issue 27 item 2)."""

from __future__ import annotations

import io
import socket

import pytest

from retinascreen.web.disconnect import client_gone
from tests.helpers.web import api_token, bearer, fundus_png, register, stored_files


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_quiet_client_is_there_and_a_closed_one_is_gone(pair):
    server, client = pair
    assert not client_gone({"gunicorn.socket": server})
    client.sendall(b"GET /next HTTP/1.1\r\n")  # a pipelined request: still there
    assert not client_gone({"gunicorn.socket": server})
    assert server.recv(100)
    client.close()
    assert client_gone({"gunicorn.socket": server})
    assert not client_gone({})  # not under gunicorn: nothing to tell


def test_upload_of_a_client_that_left_is_neither_graded_nor_stored(web_app, pair, monkeypatch):
    server, client = pair
    http = web_app.test_client()
    assert register(http, "alice").status_code == 302
    token = api_token(http, "alice")
    graded = []
    predictor = web_app.extensions["retinascreen.predictor"]
    monkeypatch.setattr(predictor, "prepare", lambda rgb: graded.append(rgb))
    client.close()  # the client hangs up while its upload waits
    response = http.post(
        "/api/v1/screenings",
        headers=bearer(token),
        data={"image": (io.BytesIO(fundus_png()), "eye.png")},
        content_type="multipart/form-data",
        environ_base={"gunicorn.socket": server},
    )
    assert response.status_code == 499
    assert graded == [] and [n for n in stored_files(web_app) if not n.startswith(".")] == []
