"""A deadline for reading a request body, so slow clients cannot hold a server thread for long.

Under gunicorn a thread reads the body of its request itself; a client sending one byte a second
would keep it for as long as it likes. :class:`BodyTimeout` gives every body ``seconds`` to
arrive; after that the socket's read side is shut, the read fails and the client gets 408.
:class:`UnreadBody` keeps keep-alive connections sound when an answer goes out before the body
was read (401, 503, 413, 408): the body is drained, or the connection is closed cleanly.
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


DRAIN_SECONDS = 5.0
"""How long the rest of a body refused unread may take to arrive before the connection closes."""


class _CountingInput:
    """``wsgi.input`` that remembers whether the whole body has been read."""

    def __init__(self, stream: Any, length: int | None) -> None:
        self._stream = stream
        self.left = length
        self.ended = False

    def _count(self, data: bytes) -> bytes:
        if not data:
            self.ended = True
        elif self.left is not None:
            self.left -= len(data)
            self.ended = self.left <= 0
        return data

    @property
    def finished(self) -> bool:
        return self.ended or (self.left is not None and self.left <= 0)

    def read(self, size: int | None = None) -> bytes:
        return self._count(self._stream.read(size))

    def readline(self, size: int | None = None) -> bytes:
        return self._count(self._stream.readline(size))

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class UnreadBody:
    """WSGI middleware: an answer given before the request body was read leaves the connection
    usable, or closes it cleanly.

    A request refused before its body is read (401 without a token, 503 in an outage, 408)
    leaves the body on the socket. gunicorn then drains at most 64 kB and drops a keep-alive
    connection it has just answered ``Connection: keep-alive``, so the client's next request on
    it fails. Here the rest of the body is read and discarded before the answer goes out, if it
    is at most ``limit`` bytes and arrives within ``seconds``; otherwise the server is told to
    close (gunicorn's ``Response.force_close``), so the answer says ``Connection: close`` and the
    client opens a new connection for its next request.
    """

    def __init__(self, app: WSGIApp, limit: int, seconds: float = DRAIN_SECONDS) -> None:
        self.app = app
        self.limit = limit
        self.seconds = seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        length = _content_length(environ)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not length and not chunked:
            return self.app(environ, start_response)
        body = _CountingInput(environ["wsgi.input"], length)
        environ["wsgi.input"] = body

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if not body.finished and not self._drain(body, length, environ):
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
                headers.append(("Connection", "close"))
                force_close = getattr(
                    getattr(start_response, "__self__", None), "force_close", None
                )
                if callable(force_close):  # gunicorn ignores the application's Connection header
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)

    def _drain(self, body: _CountingInput, length: int | None, environ: dict[str, Any]) -> bool:
        """Read and discard the rest of ``body``; True when all of it came in time."""
        if length is None or length > self.limit:
            return False  # chunked (no known end) or larger than any accepted upload
        sock = environ.get("gunicorn.socket")
        deadline = _Deadline(sock, self.seconds) if isinstance(sock, socket.socket) else None
        try:
            while not body.finished:
                body.read(min(body.left or 65536, 65536))
        except Exception:  # a timeout (408) or a reset: the connection closes
            return False
        finally:
            if deadline is not None:
                deadline.stop()
        return not (deadline is not None and deadline.expired) and (body.left or 0) <= 0
