"""Account management outside a request (CLI): administrators, the demo account, invites and
the account lifecycle (disable, enable, delete)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from retinascreen.errors import ConfigError
from retinascreen.web.config import database_url, default_instance_path
from retinascreen.web.db import make_engine, upgrade
from retinascreen.web.models import ApiToken, AuditEvent, Screening, User, new_public_id, utcnow
from retinascreen.web.security import (
    create_user,
    end_sessions,
    find_user,
    hash_password,
    password_problem,
)

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
        existing = find_user(db, username)
        if existing is not None:
            raise ConfigError(f"user {existing.username!r} already exists (names ignore case)")
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
        user = find_user(db, username)
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


SCREENINGS_CHOICES = ("delete", "keep")


def _account(db: Session, username: str) -> User:
    user = find_user(db, username)
    if user is None:
        raise ConfigError(f"no account named {username!r}")
    return user


def _record(db: Session, event: str, user: User, detail: str) -> None:
    """An audit event done on the command line (no address); the username text stays after
    the account is deleted (the row's user_id then becomes NULL)."""
    db.add(AuditEvent(event=event, user_id=user.id, username=user.username, detail=detail))


def _revoke_everything(db: Session, user: User) -> int:
    """End every session and revoke every API token of ``user``; returns the tokens revoked."""
    live = select(func.count(ApiToken.id)).where(
        ApiToken.user_id == user.id, ApiToken.revoked.is_(None)
    )
    count = db.scalar(live) or 0
    end_sessions(db, user, tokens=True)
    return count


def disable_user(
    username: str, *, database_url: str | None = None, instance: Path | None = None
) -> str:
    """Disable an account now: its sessions end, its tokens are revoked, it cannot sign in or
    get a token until :func:`enable_user`. Its screenings stay. Returns what was done."""
    db, _ = _session(database_url, instance)
    try:
        user = _account(db, username)
        if user.deleted is not None:
            raise ConfigError(f"{user.username!r} was deleted (screenings kept); nothing to do")
        tokens = _revoke_everything(db, user)
        already = user.disabled is not None
        user.disabled = user.disabled or utcnow()
        _record(db, "account_disabled", user, f"command line; {tokens} tokens revoked")
        db.commit()
        state = "was already disabled" if already else "disabled"
        return f"{user.username!r} {state}: sessions ended, {tokens} API tokens revoked"
    finally:
        _close(db)


def set_role(
    username: str,
    role: str,
    *,
    site: str | None = None,
    database_url: str | None = None,
    instance: Path | None = None,
) -> str:
    """Make an account a clinic user (of ``site``), a grader or an administrator."""
    from retinascreen.web.visit_models import ROLES

    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if site is not None and (not site.strip() or len(site) > 64 or not site.isprintable()):
        raise ConfigError("site must be 1 to 64 printable characters")
    db, _ = _session(database_url, instance)
    try:
        user = _account(db, username)
        before = f"{'admin' if user.is_admin else user.role} at {user.site or 'no site'}"
        user.role = role
        user.is_admin = role == "admin"
        if site is not None:
            user.site = site.strip()
        after = f"{role} at {user.site or 'no site'}"
        _record(db, "account_role", user, f"command line; {before} -> {after}")
        db.commit()
        return f"{user.username!r} is now {after}"
    finally:
        _close(db)


def enable_user(
    username: str, *, database_url: str | None = None, instance: Path | None = None
) -> str:
    """Let a disabled account sign in again (old sessions and tokens stay ended)."""
    db, _ = _session(database_url, instance)
    try:
        user = _account(db, username)
        if user.deleted is not None:
            raise ConfigError(
                f"{user.username!r} was deleted with its screenings kept and cannot be enabled; "
                "create a new account"
            )
        if user.disabled is None:
            return f"{user.username!r} is already enabled"
        user.disabled = None
        _record(db, "account_enabled", user, "command line")
        db.commit()
        return (
            f"{user.username!r} enabled: it can sign in again (old sessions and tokens stay ended)"
        )
    finally:
        _close(db)


def delete_user(
    username: str,
    *,
    screenings: str | None = None,
    database_url: str | None = None,
    instance: Path | None = None,
) -> str:
    """Delete an account: every session ends and every token goes at once; audit events keep
    the username. An account with screenings needs ``screenings``:

    - ``"delete"``: its screenings and their stored photos, heat maps and overlays go too;
    - ``"keep"``: the screenings stay (medical records), under the account, which is closed for
      good: it cannot sign in or be enabled, its password is wiped and its name is not reused.
    """
    if screenings not in (None, *SCREENINGS_CHOICES):
        raise ConfigError("--screenings must be 'delete' or 'keep'")
    db, instance = _session(database_url, instance)
    files: list[str] = []
    try:
        user = _account(db, username)
        name = user.username
        count = db.scalar(select(func.count(Screening.id)).where(Screening.user_id == user.id))
        if count and screenings is None:
            raise ConfigError(
                f"{name!r} has {count} screenings: add --screenings delete (they and their "
                "photos are deleted) or --screenings keep (kept under the closed account)"
            )
        tokens = _revoke_everything(db, user)
        if count and screenings == "keep":
            user.deleted = user.disabled = utcnow()
            user.password_hash = "!closed"  # no argon2 hash: never matches a password
            user.public_id = new_public_id()
            _record(db, "account_closed", user, f"command line; {count} screenings kept")
            db.commit()
            return (
                f"{name!r} closed: sessions ended, {tokens} API tokens revoked, "
                f"{count} screenings kept under the closed account"
            )
        for row in db.scalars(select(Screening).where(Screening.user_id == user.id)):
            files += [n for n in (getattr(row, c) for c in Screening.FILE_COLUMNS) if n]
        _record(db, "account_deleted", user, f"command line; {count or 0} screenings deleted")
        db.execute(delete(Screening).where(Screening.user_id == user.id))
        _delete_empty_visits(db, user)
        db.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
        db.execute(update(AuditEvent).where(AuditEvent.user_id == user.id).values(user_id=None))
        db.delete(user)
        db.commit()
    finally:
        _close(db)
    _remove_files(instance, files)
    return (
        f"{name!r} deleted: sessions ended, {tokens} API tokens revoked, "
        f"{count or 0} screenings and {len(files)} stored files deleted"
    )


def _delete_empty_visits(db: Session, user: User) -> None:
    """The account's visits left without a photo go too (their reviews and queue items with
    them, by the database's cascade)."""
    from sqlalchemy import exists

    from retinascreen.web.visit_models import Visit

    db.execute(
        delete(Visit).where(
            Visit.user_id == user.id, ~exists().where(Screening.visit_id == Visit.id)
        )
    )


def _remove_files(instance: Path, names: list[str]) -> None:
    """Delete the stored files of deleted screenings (after the rows are gone)."""
    from retinascreen.web.storage import PhotoStore

    store = PhotoStore(instance / "photos")
    for name in names:
        store.path(name).unlink(missing_ok=True)
