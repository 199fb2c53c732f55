"""Account management outside a request (CLI): administrators and the demo account."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from retinascreen.errors import ConfigError
from retinascreen.web.config import database_url, default_instance_path
from retinascreen.web.db import make_engine, upgrade
from retinascreen.web.models import User
from retinascreen.web.security import create_user, hash_password, password_problem

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{3,64}$")


def _session(db_url: str | None, instance: Path | None) -> tuple[Session, Path]:
    instance = Path(instance or default_instance_path()).resolve()
    instance.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url({"DATABASE_URL": db_url}, instance))
    upgrade(engine)
    return Session(engine), instance


def _close(db: Session) -> None:
    """Close the session and dispose of the engine it was opened on."""
    engine = db.get_bind()
    db.close()
    if isinstance(engine, Engine):
        engine.dispose()


def create_admin(
    username: str, password: str, *, database_url: str | None = None, instance: Path | None = None
) -> None:
    """Create an administrator; ConfigError when the name is invalid or taken."""
    if not USERNAME_RE.match(username):
        raise ConfigError("username: 3-64 letters, digits, dots, dashes or underscores")
    problem = password_problem(password, username=username)
    if problem:
        raise ConfigError(f"password too weak: {problem}")
    db, _ = _session(database_url, instance)
    try:
        if db.scalar(select(User).where(User.username == username)) is not None:
            raise ConfigError(f"user {username!r} already exists")
        create_user(db, username, password, is_admin=True)
        db.commit()
    finally:
        _close(db)


def ensure_demo_user(
    *, database_url: str | None = None, instance: Path | None = None, username: str = "demo"
) -> str:
    """Create the demo account if needed and return its password (kept in instance/demo_password).

    Idempotent: a second call returns the same password and leaves the account as it is.
    """
    db, instance = _session(database_url, instance)
    password_file = instance / "demo_password"
    try:
        user = db.scalar(select(User).where(User.username == username))
        password = password_file.read_text().strip() if password_file.exists() else ""
        if not password:
            password = "-".join(secrets.token_hex(3) for _ in range(3))
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
            if user is not None:
                user.password_hash = hash_password(password)
        if user is None:
            create_user(db, username, password)
        db.commit()
        return password
    finally:
        _close(db)


def create_invite(
    *, days: int = 7, database_url: str | None = None, instance: Path | None = None
) -> str:
    """A single-use registration invite valid for ``days``; returns its code (shown once)."""
    from retinascreen.web.invites import make_invite

    if not 1 <= days <= 365:
        raise ConfigError("--days must be 1..365")
    db, _ = _session(database_url, instance)
    try:
        code = make_invite(db, days=days)
        db.commit()
        return code
    finally:
        _close(db)
