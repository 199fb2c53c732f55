"""A deadline for reading a request body, so slow clients cannot hold a server thread for long.

Under gunicorn a thread reads the body of its request itself; a client sending one byte a second
would keep it for as long as it likes. :class:`BodyTimeout` gives every body ``seconds`` to
arrive; after that the socket's read side is shut, the read fails and the client gets 408.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import RequestTimeout

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Deadline:
    """Shuts the read side of ``sock`` when the time is up, unless stopped first."""

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self.expired = False
        self._sock = sock
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        self.expired = True
        with contextlib.suppress(OSError):  # already closed
            self._sock.shutdown(socket.SHUT_RD)

    def stop(self) -> None:
        self._timer.cancel()


class _TimedInput:
    """``wsgi.input`` that raises 408 once the deadline has passed."""

    def __init__(self, stream: Any, deadline: _Deadline, length: int | None) -> None:
        self._stream = stream
        self._deadline = deadline
        self._left = length

    def _check(self, data: bytes) -> bytes:
        if self._deadline.expired:
            raise RequestTimeout()
        if self._left is not None:
            self._left -= len(data)
        if not data or (self._left is not None and self._left <= 0):
            self._deadline.stop()  # the whole body is in: no deadline while the app works
        return data

    def read(self, size: int | None = None) -> bytes:
        if self._deadline.expired:
            raise RequestTimeout()
        return self._check(self._stream.read(size))

    def readline(self, size: int | None = None) -> bytes:
        if self._deadline.expired:
            raise RequestTimeout()
        return self._check(self._stream.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class BodyTimeout:
    """WSGI middleware: a request body must arrive within ``seconds`` (0 turns it off).

    Works with servers that put the client socket in ``environ["gunicorn.socket"]``.
    """

    def __init__(self, app: WSGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sock = environ.get("gunicorn.socket")
        length = _content_length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not self.seconds or sock is None or (not length and not chunked):
            return self.app(environ, start_response)
        deadline = _Deadline(sock, self.seconds)
        environ["wsgi.input"] = _TimedInput(environ["wsgi.input"], deadline, length)
        try:
            return self.app(environ, start_response)
        finally:
            deadline.stop()


def _content_length(environ: dict[str, Any]) -> int | None:
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0) or None
    except ValueError:
        return None
