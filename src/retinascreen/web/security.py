"""Passwords (argon2), API tokens (random, stored as SHA-256), sign-in rate limiting and audit."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retinascreen.web.models import ApiToken, AuditEvent, User, utcnow

_hasher = PasswordHasher()
TOKEN_PREFIX = "rs_"
# A real hash of a random password: verifying against it makes unknown usernames cost the
# same time as known ones, so timing does not reveal which accounts exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password``."""
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Whether ``password`` is ``user``'s; rehashes when argon2 parameters changed."""
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if user is None:
        return False
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return True


def create_user(db: Session, username: str, password: str, *, is_admin: bool = False) -> User:
    """Add a user (the caller commits). Username uniqueness is the caller's check."""
    user = User(username=username, password_hash=hash_password(password), is_admin=is_admin)
    db.add(user)
    db.flush()
    return user


def token_digest(secret: str) -> str:
    """SHA-256 hex of a token secret, the only form stored in the database."""
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(db: Session, user: User) -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the secret (shown once, never stored)."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, token_sha256=token_digest(secret))
    db.add(token)
    db.flush()
    return token, secret


def find_token(db: Session, secret: str) -> ApiToken | None:
    """The live (not revoked) token with this secret, or None."""
    token = db.scalar(select(ApiToken).where(ApiToken.token_sha256 == token_digest(secret)))
    if token is None or token.revoked is not None:
        return None
    return token


def client_ip() -> str:
    """The client's address as the WSGI server saw it."""
    return (request.remote_addr or "unknown")[:64]


def audit(
    db: Session,
    event: str,
    *,
    user: User | None = None,
    username: str | None = None,
    detail: str | None = None,
) -> None:
    """Record an audit event (the caller commits)."""
    db.add(
        AuditEvent(
            event=event,
            user_id=user.id if user else None,
            username=(user.username if user else username or None),
            ip=client_ip(),
            detail=detail,
        )
    )


def too_many_failures(db: Session, username: str) -> bool:
    """Whether this username has failed to sign in from this address too often lately.

    Failures are read from the audit log, so the limit holds across gunicorn workers and restarts.
    """
    window = timedelta(seconds=current_app.config["LOGIN_FAILURE_WINDOW_SECONDS"])
    count = db.scalar(
        select(func.count(AuditEvent.id)).where(
            AuditEvent.event == "login_failure",
            AuditEvent.username == username[:64],
            AuditEvent.ip == client_ip(),
            AuditEvent.created >= utcnow() - window,
        )
    )
    return int(count or 0) >= current_app.config["LOGIN_FAILURE_LIMIT"]


def authenticate(db: Session, username: str, password: str, *, via: str) -> User | None:
    """Check credentials and record the attempt in the audit log (the caller commits)."""
    user = db.scalar(select(User).where(User.username == username))
    if verify_password(user, password):
        audit(db, "login_success", user=user, detail=via)
        return user
    audit(db, "login_failure", username=username[:64], detail=via)
    return None


RATE_LIMIT_MESSAGE = "Too many failed sign-in attempts. Wait five minutes and try again."
