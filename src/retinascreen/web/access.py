"""Who may see what, written once for the pages and the API: one's own screening by id, one's
screening history and the visits list, each a page at a time, newest first.

A screening belongs to the user who uploaded it, administrators included: another user's
screening is answered exactly like a missing one (404, ids are not revealed). The visits a user
may open are :func:`~retinascreen.web.visit_service.visible`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from retinascreen.web.models import Screening, User
from retinascreen.web.visit_models import Visit
from retinascreen.web.visit_service import EAGER, visible


def escape_like(text: str) -> str:
    """Escape LIKE wildcards so a search for ``50%`` means the characters ``50%``."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def owned_screening(db: Session, user: User, screening_id: int) -> Screening | None:
    """``user``'s screening with this id, else None (missing, or another user's)."""
    screening = db.get(Screening, screening_id)
    if screening is None or screening.user_id != user.id:
        return None
    return screening


def history_page(
    db: Session, user: User, *, patient: str = "", page: int = 1, per_page: int = 20
) -> tuple[Sequence[Screening], int]:
    """One page of ``user``'s screenings, newest first, and how many there are in all; with
    ``patient``, only those whose patient id contains it (case-insensitive, taken literally)."""
    where = [Screening.user_id == user.id]
    if patient:
        where.append(Screening.patient_id.ilike(f"%{escape_like(patient)}%", escape="\\"))
    total = db.scalar(select(func.count(Screening.id)).where(*where)) or 0
    rows = db.scalars(
        select(Screening)
        .where(*where)
        .order_by(Screening.created.desc(), Screening.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return rows, total


def visits_page(
    db: Session, user: User, *, page: int = 1, per_page: int = 20
) -> tuple[Sequence[Visit], int]:
    """One page of the visits ``user`` may open, latest visit date first, with their photos,
    reviews, queue items and patient loaded, and how many there are in all."""
    where = visible(user)
    total = db.scalar(select(func.count(Visit.id)).where(where)) or 0
    rows = db.scalars(
        select(Visit)
        .options(*EAGER)
        .where(where)
        .order_by(Visit.visit_date.desc(), Visit.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return rows, total
