"""Passwords (argon2, zxcvbn rules), API tokens (random, stored as SHA-256, expiring),
rate-limited sign-in and the audit log."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from retinascreen.web.limits import Refused, login_limits, take
from retinascreen.web.models import ApiToken, AuditEvent, User, as_utc, username_key, utcnow

_hasher = PasswordHasher()
TOKEN_PREFIX = "rs_"
USERNAME_MAX = 64
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


def find_user(db: Session, username: str) -> User | None:
    """The account named ``username`` regardless of case and Unicode form (see username_key).

    Names longer than any account's (64) are not normalised (NFKC can grow text 18-fold)."""
    if len(username) > USERNAME_MAX:
        return None
    return db.scalar(select(User).where(User.username_key == username_key(username)))


def create_user(db: Session, username: str, password: str, *, is_admin: bool = False) -> User:
    """Add a user (the caller commits). Username uniqueness is the caller's check
    (:func:`find_user`); the database refuses a clash too (IntegrityError)."""
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
    token = ApiToken(
        user_id=user.id, user_public_id=user.public_id, token_sha256=token_digest(secret)
    )
    db.add(token)
    db.flush()
    return token, secret


def find_token(db: Session, secret: str) -> tuple[ApiToken | None, User | None, str]:
    """The live token with this secret and its account, else None and why (unknown, revoked,
    expired, or its account is gone or disabled).

    The account must still be the one the token was made for (same ``public_id``): an id
    reused after a deletion outside the app does not inherit the token.
    """
    token = db.scalar(select(ApiToken).where(ApiToken.token_sha256 == token_digest(secret)))
    if token is None or token.revoked is not None:
        return None, None, "Invalid or revoked token."
    user = db.get(User, token.user_id)
    if user is None or user.public_id != token.user_public_id:
        return None, None, "Invalid or revoked token."
    if not user.is_active:
        return None, None, "This account is disabled: ask an administrator."
    if token_expires(token) <= utcnow():
        return (
            None,
            None,
            (
                "The token expired: create a new one with POST /api/v1/tokens "
                "(or refresh tokens before they expire with POST /api/v1/tokens/refresh)."
            ),
        )
    return token, user, ""


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


DISABLED_MESSAGE = "This account is disabled: ask an administrator."


def authenticate(db: Session, username: str, password: str, *, via: str) -> User | None:
    """Check credentials and record the attempt in the audit log (the caller commits).

    A disabled account's right password is still checked (same cost) and refused; the caller
    tells a disabled account apart by ``user.is_active``.
    """
    user = find_user(db, username)
    if verify_password(user, password):
        assert user is not None
        if not user.is_active:
            audit(db, "login_disabled", user=user, detail=via)
            return user
        audit(db, "login_success", user=user, detail=via)
        return user
    audit(db, "login_failure", username=username[:64], detail=via)
    return None


def sign_in(db: Session, username: str, password: str, *, via: str) -> User | Refused | None:
    """Rate-limited :func:`authenticate`: the user, None (wrong), or :class:`Refused` (limited).

    The attempt is counted atomically BEFORE the password is checked (see ``web/limits.py``);
    a right password gives the count back, so only failures use up the allowance.
    """
    ticket = take(login_limits(client_ip(), username_key(username[:USERNAME_MAX])))
    if isinstance(ticket, Refused):
        return ticket
    user = authenticate(db, username, password, via=via)
    if user is not None:
        ticket.release()
    return user


def rate_limit_message(refused: Refused) -> str:
    """What a refused client is told (with the wait in whole minutes or seconds)."""
    wait = refused.retry_after
    when = f"{wait} seconds" if wait < 120 else f"{(wait + 59) // 60} minutes"
    return f"Too many attempts. Wait {when} and try again."


MIN_PASSWORD_LENGTH = 10
MIN_PASSWORD_SCORE = 3


def password_problem(password: str, *, username: str = "") -> str | None:
    """Why ``password`` is too weak (zxcvbn's own feedback), or None when it is acceptable.

    At least 10 characters and a zxcvbn score of 3 ("safely unguessable") out of 4, judged with
    the username and the product name as words an attacker would try first.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    from zxcvbn import zxcvbn  # type: ignore[import-untyped]

    result = zxcvbn(password[:100], user_inputs=[username, "retinascreen", "retina", "screen"])
    if result["score"] >= MIN_PASSWORD_SCORE:
        return None
    feedback = result.get("feedback") or {}
    parts = [feedback.get("warning") or "This password is too easy to guess."]
    parts += feedback.get("suggestions") or []
    parts.append("A few unrelated words make a strong password.")
    return " ".join(part.rstrip(".") + "." for part in parts if part)


def end_sessions(db: Session, user: User, *, tokens: bool) -> None:
    """End every session of ``user`` (their cookies stop working); revoke tokens too if asked."""
    user.session_version = (user.session_version or 0) + 1
    if tokens:
        db.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked.is_(None))
            .values(revoked=utcnow())
        )


def token_expires(token: ApiToken) -> datetime:
    """When ``token`` stops working (``TOKEN_LIFETIME_SECONDS`` after it was made)."""
    lifetime = timedelta(seconds=int(current_app.config["TOKEN_LIFETIME_SECONDS"]))
    return as_utc(token.created or utcnow()) + lifetime
