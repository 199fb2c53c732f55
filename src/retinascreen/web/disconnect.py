"""Stop working for a client that has left: an upload's costly steps check the connection first.

Decoding a large photo, grading it and drawing the heat map and overlays take seconds of CPU.
When the client has closed its connection meanwhile (a timeout, a cancelled upload, an attacker
who sends a costly file and hangs up), nobody will read the answer: :func:`stop_if_client_gone`
raises :class:`ClientClosedRequest` between those steps so the thread and the decode slot go to
the next request. A step already running (inside libjpeg or the model) is not interrupted.

Only gunicorn tells the app its socket (``environ["gunicorn.socket"]``); elsewhere (the test
client, other servers) the checks answer "still there".
"""

from __future__ import annotations

import socket
from typing import Any

from flask import has_request_context, request
from werkzeug.exceptions import HTTPException


class ClientClosedRequest(HTTPException):
    """The client hung up before its answer was ready (nginx's 499; nobody reads it)."""

    code = 499
    description = "The client closed the connection before the answer was ready."


def client_gone(environ: dict[str, Any]) -> bool:
    """Whether the peer of ``environ``'s gunicorn socket has closed the connection.

    Peeks one byte without blocking: end-of-file (or a reset) means gone; no data yet, or the
    next pipelined request, means still there. TLS sockets cannot peek and count as there.
    """
    sock = environ.get("gunicorn.socket")
    if not isinstance(sock, socket.socket):
        return False
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError, ValueError):
        return False  # connected and quiet (or an SSL socket, which refuses flags)
    except OSError:
        return True  # reset by the peer
    return data == b""


def stop_if_client_gone() -> None:
    """Raise :class:`ClientClosedRequest` when the current request's client has left."""
    if has_request_context() and client_gone(request.environ):
        raise ClientClosedRequest()
