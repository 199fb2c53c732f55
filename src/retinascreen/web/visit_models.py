"""Tables of the screening programme: pseudonymous patients, visits, the review queue and the
graders' decisions. A visit's photos are :class:`~retinascreen.web.models.Screening` rows with
``visit_id``, ``eye`` and ``field`` set."""

from __future__ import annotations

import json
import secrets
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from retinascreen.web.models import Base, Screening, utcnow

if TYPE_CHECKING:
    from retinascreen.web.models import User

ROLES = ("clinic", "grader", "admin")
FIELDS = ("macula", "disc", "other")


def new_public_id() -> str:
    """A random identifier (128 bits) for URLs: row numbers are never shown."""
    return secrets.token_hex(16)


def role_of(user: User) -> str:
    """``admin`` for administrators (``is_admin``), else the account's ``role``."""
    return "admin" if user.is_admin else (user.role or "clinic")


class Patient(Base):
    """A patient known only by a pseudonym (the programme's own id; never a name)."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Visit(Base):
    """One screening visit: a patient, a date, a site, and the photos taken then."""

    __tablename__ = "visits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, index=True, default=new_public_id
    )
    patient_id: Mapped[int | None] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    """None only for screenings made before visits existed without a patient id."""
    site: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    visit_date: Mapped[date] = mapped_column(Date, index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    """Who uploaded it."""
    migrated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """A one-photo visit made by migration 0005 from a screening of the older app."""

    patient: Mapped[Patient | None] = relationship()
    photos: Mapped[list[Screening]] = relationship(order_by=Screening.id)
    reviews: Mapped[list[Review]] = relationship(
        back_populates="visit", order_by="Review.id", cascade="all, delete-orphan"
    )
    queue_items: Mapped[list[ReviewItem]] = relationship(
        back_populates="visit", order_by="ReviewItem.id", cascade="all, delete-orphan"
    )

    @property
    def pseudonym(self) -> str | None:
        return self.patient.pseudonym if self.patient else None


class ReviewItem(Base):
    """A visit waiting for (or given) a grader's review, and the rules that sent it."""

    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    reasons_json: Mapped[str] = mapped_column(Text)
    """``[{"eye": "left", "rule": "ungradable", "text": ...}, ...]``"""
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    closed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    closed_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )

    visit: Mapped[Visit] = relationship(back_populates="queue_items")

    @property
    def reasons(self) -> list[dict[str, Any]]:
        return list(json.loads(self.reasons_json))


class Review(Base):
    """A grader's decision on one eye of a visit; the machine's view is kept beside it."""

    __tablename__ = "reviews"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    visit_id: Mapped[int] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    eye: Mapped[str] = mapped_column(String(5))
    grader_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    grader_name: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    gradable: Mapped[bool] = mapped_column(Boolean)
    grade: Mapped[int | None] = mapped_column(Integer, nullable=True)
    maculopathy: Mapped[bool] = mapped_column(Boolean, default=False)
    retake: Mapped[bool] = mapped_column(Boolean, default=False)
    """The grader asks for new photographs of this eye (its quality), graded or not."""
    note: Mapped[str] = mapped_column(Text, default="")
    machine_json: Mapped[str] = mapped_column(Text)
    """The machine's eye result when the grader decided: ``{"gradable", "grade", "maculopathy"}``."""

    visit: Mapped[Visit] = relationship(back_populates="reviews")

    @property
    def machine(self) -> dict[str, Any]:
        return dict(json.loads(self.machine_json))
