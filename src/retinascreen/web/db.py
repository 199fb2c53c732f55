"""Engine, sessions and migrations: one engine per app, one session per request.

A SQLite file is opened read-write only (``mode=rw``): a deleted database is an error answered
503, never a fresh empty file. Only :func:`upgrade` (the explicit migrate step) may create it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from flask import current_app, g
from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from retinascreen.web.private import private_sqlite, sqlite_file
from retinascreen.web.writable import write_failure

MIGRATIONS = Path(__file__).parent / "migrations"
BUSY_TIMEOUT_SECONDS = 5.0
"""How long a request waits for another process's SQLite lock before answering 503."""
MIGRATE_BUSY_TIMEOUT_SECONDS = 30.0


def make_engine(
    url: str,
    *,
    create: bool = False,
    busy_timeout: float = BUSY_TIMEOUT_SECONDS,
    foreign_keys: bool = True,
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys on.

    A SQLite file is created only with ``create=True``; ``foreign_keys=False`` is for
    migrations only (SQLite rebuilds a table by dropping it, which would otherwise cascade). Each checkout checks that the file a
    pooled connection has open is still the file at that path, so deleting the database makes
    requests fail (503) instead of writing into the deleted file.
    """
    path = sqlite_file(url)
    if path is None and make_url(url).get_backend_name() != "sqlite":
        return _reopen_after_write_failures(create_engine(url, pool_pre_ping=True))
    if path is None:
        return create_engine(url)
    mode = "rwc" if create else "rw"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(
            f"file:{quote(str(path))}?mode={mode}",
            uri=True,
            timeout=busy_timeout,
            check_same_thread=False,
        )

    engine = create_engine(url, creator=connect)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
        record.info["inode"] = _identity(path)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.close()

    @event.listens_for(engine, "checkout")
    def _same_file(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if _identity(path) != record.info.get("inode"):
            raise exc.DisconnectionError(f"database file {path} was removed or replaced")

    return _reopen_after_write_failures(engine)


def _reopen_after_write_failures(engine: Engine) -> Engine:
    """A write refused as read-only or disk-full discards every pooled connection.

    SQLite opens a file it may not write read-only and keeps it so (and its ``-shm``) for the
    connection's life: once the file is writable again only new connections can write. So such
    a failure counts as a disconnect and the pool starts afresh; the request still fails (503
    or 507), the next one gets a new connection, and no restart is needed.
    """

    @event.listens_for(engine, "handle_error")
    def _write_failure(context: Any) -> None:
        if write_failure(context.original_exception) is not None:
            context.is_disconnect = True

    return engine


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def alembic_config(url: str) -> Config:
    """Alembic configuration pointing at the packaged migrations and at ``url``."""
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (``alembic upgrade head``).

    This is the one step allowed to create a SQLite file; it migrates on its own engine, with
    SQLite's foreign keys off while tables are rebuilt (as SQLite's ALTER TABLE guide says).
    """
    url = engine.url.render_as_string(hide_password=False)
    path = sqlite_file(url)
    if (
        path is not None
    ):  # created 0600 (SQLite gives -wal/-shm the same mode), older ones tightened
        private_sqlite(path)
    migrator = make_engine(
        url, create=True, busy_timeout=MIGRATE_BUSY_TIMEOUT_SECONDS, foreign_keys=False
    )
    try:
        with migrator.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        migrator.dispose()


def schema_revision(engine: Engine) -> tuple[str | None, str]:
    """(the database's Alembic revision or None, the packaged head revision)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    url = engine.url.render_as_string(hide_password=False)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current, str(head)


def session() -> Session:
    """The current request's session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        factory: sessionmaker[Session] = current_app.extensions["retinascreen.sessionmaker"]
        g.db_session = factory()
    return g.db_session


def close_session(_exc: BaseException | None = None) -> None:
    """Teardown hook: roll back anything uncommitted and return the connection."""
    db_session = g.pop("db_session", None)
    if db_session is not None:
        db_session.close()
