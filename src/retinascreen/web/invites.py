"""Single-use registration invites (``REGISTRATION = "invite"``): made by
``retinascreen admin invite``, stored as SHA-256, used up atomically."""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from retinascreen.web.models import Invite, User, as_utc, utcnow
from retinascreen.web.security import token_digest


def make_invite(db: Session, *, days: int = 7) -> str:
    """Add an invite valid for ``days``; returns its code (shown once, never stored)."""
    code = secrets.token_urlsafe(18)
    db.add(Invite(code_sha256=token_digest(code), expires=utcnow() + timedelta(days=days)))
    db.flush()
    return code


def valid_invite(db: Session, code: str) -> bool:
    """Whether ``code`` is an unused, unexpired invite."""
    if not code:
        return False
    invite = db.scalar(select(Invite).where(Invite.code_sha256 == token_digest(code)))
    return invite is not None and invite.used is None and as_utc(invite.expires) > utcnow()


def use_invite(db: Session, code: str, user: User) -> bool:
    """Mark the invite used by ``user`` in one UPDATE; False when someone used it first."""
    result = db.execute(
        update(Invite)
        .where(
            Invite.code_sha256 == token_digest(code),
            Invite.used.is_(None),
            Invite.expires > utcnow(),
        )
        .values(used=utcnow(), used_by=user.id)
    )
    return getattr(result, "rowcount", 0) == 1
