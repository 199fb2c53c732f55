"""Patient data is private to the service account: folders 0700, files 0600.

The instance folder holds the database (and SQLite's ``-wal``/``-shm``), every photo, heat map
and overlay, cached reports and the secret key. Each is created private, and folders and
database files an older version left group- or world-readable are tightened at start-up.
SQLite gives its ``-wal`` and ``-shm`` files the database file's own permissions, so a 0600
database keeps them 0600 too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


def private_folder(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed; the folder itself ends up 0700.

    A shared folder with the sticky bit (``/tmp``) is never narrowed: that would lock every
    other user out of it. The parents are created 0700 but existing ones are left alone.
    """
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & stat.S_ISVTX:
        log.warning("%s is a shared folder (sticky bit): not making it private", path)
    else:
        tighten(path)
    return path


def tighten(path: Path) -> None:
    """Drop the group and other permission bits of ``path`` if it has any (and is ours)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(mode & ~0o077)
    except FileNotFoundError:
        return
    except OSError as exc:  # not our file, or a read-only file system: say so, do not stop
        log.warning("cannot make %s private: %s", path, exc)


def write_private(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` to a new or existing file ``path`` with mode 0600 (never wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        with contextlib.suppress(OSError):
            os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode on O_CREAT
        handle.write(data)
        handle.flush()
        if sync:
            os.fsync(handle.fileno())


def private_sqlite(database: Path) -> None:
    """Create the SQLite file 0600 if it is missing; tighten it and its side files if not."""
    database.parent.mkdir(
        mode=FOLDER_MODE, parents=True, exist_ok=True
    )  # not narrowed: may be shared
    with contextlib.suppress(FileExistsError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    for suffix in ("", *SQLITE_SIDE_FILES):
        tighten(database.with_name(database.name + suffix))


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory SQLite)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).resolve()
