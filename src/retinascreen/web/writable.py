"""Can the service write? Read-only databases and full disks, told apart from other failures.

A read-only SQLite file (or folder: SQLite writes ``-wal``/``-shm`` beside it), a read-only
PostgreSQL and a full disk all let reads succeed while every write fails. Here:

- :func:`write_failure` names the failure ("read_only", "disk_full") from any exception
  (SQLAlchemy's, sqlite3's, psycopg's, an ``OSError``);
- :func:`database_write_problem` and :func:`folder_write_problem` are the cheap write probes
  ``/readyz`` and ``retinascreen serve`` run: an UPDATE rolled back, a one-byte file removed.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Literal

from sqlalchemy import Engine, text

from retinascreen.web.private import sqlite_file, write_private

Failure = Literal["read_only", "disk_full"]

READ_ONLY = "the database is read-only for this service"
DISK_FULL = "the disk is full: nothing can be saved"
STORAGE_FULL_MESSAGE = (
    "The server's storage is full, so nothing can be saved right now. Try again later; "
    "the administrators have to free space."
)
READ_ONLY_MESSAGE = "The database cannot be written right now. Try again in a few seconds."

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_READ_ONLY_ERRNOS = {errno.EROFS, errno.EACCES, errno.EPERM}
_PG_STATES: dict[str, Failure] = {
    "25006": "read_only",  # read_only_sql_transaction (a standby, default_transaction_read_only)
    "53100": "disk_full",
    "53400": "disk_full",  # configuration_limit_exceeded (temp_file_limit)
}
_TEXTS: tuple[tuple[str, Failure], ...] = (
    ("database or disk is full", "disk_full"),
    ("no space left on device", "disk_full"),
    ("disk quota exceeded", "disk_full"),
    ("attempt to write a readonly database", "read_only"),
    ("readonly database", "read_only"),
    ("read-only file system", "read_only"),
    ("read-only transaction", "read_only"),
)


def write_failure(exc: BaseException) -> Failure | None:
    """``"read_only"`` or ``"disk_full"`` when ``exc`` (or its cause) says so, else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            if current.errno in _DISK_FULL_ERRNOS:
                return "disk_full"
            if current.errno == errno.EROFS:
                return "read_only"
        state = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if isinstance(state, str) and state in _PG_STATES:
            return _PG_STATES[state]
        message = str(current).lower()
        for words, failure in _TEXTS:
            if words in message:
                return failure
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return None


def database_write_problem(engine: Engine) -> str | None:
    """None when the database takes a write; else what is wrong, in a sentence.

    Writes the Alembic version row onto itself and rolls back: it needs the write lock (and
    fails on a read-only file, folder or server) but leaves nothing behind. For a SQLite file,
    the file and folder permissions are checked too (a ``chmod`` while connections are open
    is otherwise seen only by the next connection).
    """
    path = _sqlite_path(engine)
    if path is not None and os.geteuid() != 0:
        for target in (path, path.parent):
            if target.exists() and not os.access(target, os.W_OK):
                return f"{READ_ONLY} (no write permission on {target.name or target})"
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            try:
                connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            finally:
                transaction.rollback()
    except Exception as exc:  # any failure to write means "not ready"
        failure = write_failure(exc)
        if failure == "read_only":
            return READ_ONLY
        if failure == "disk_full":
            return DISK_FULL
        raise
    return None


def folder_write_problem(folder: Path) -> str | None:
    """None when a file can be created in ``folder``; else what is wrong, in a sentence."""
    probe = folder / f".write-probe-{uuid.uuid4().hex}"
    try:
        write_private(probe, b"\0")
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS:
            return DISK_FULL
        if exc.errno in _READ_ONLY_ERRNOS:
            return f"the folder {folder.name} is read-only for this service"
        raise
    finally:
        probe.unlink(missing_ok=True)
    return None


def _sqlite_path(engine: Engine) -> Path | None:
    return sqlite_file(engine.url.render_as_string(hide_password=False))
