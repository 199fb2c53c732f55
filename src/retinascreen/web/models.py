"""Database tables (SQLAlchemy 2 ORM): users, API tokens, screenings and the audit log."""

from __future__ import annotations

import json
import secrets
import unicodedata
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from retinascreen.result import Prediction


def utcnow() -> datetime:
    """Timezone-aware now in UTC (stored as UTC)."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` with its UTC offset (SQLite hands stored times back without one)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table; Alembic's target metadata."""


def username_key(username: str) -> str:
    """The form usernames are compared in: NFKC, case-folded (``Alice``, ``ALICE`` and
    ``ａｌｉｃｅ`` are one name). The account keeps the spelling it was created with."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def new_public_id() -> str:
    """A random account identifier (128 bits) that is never reused."""
    return secrets.token_hex(16)


class User(Base):
    """A clinician's account. ``password_hash`` is an argon2 hash, never the password.

    Sessions and API tokens name the account by ``public_id`` (random, never reused), not by
    ``id``: an account deleted outside the app cannot hand its cookies or tokens to the next
    account. ``id`` is AUTOINCREMENT on SQLite too, so it is never reused either.
    """

    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, index=True, default=new_public_id
    )
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    username_key: Mapped[str] = mapped_column(String(255), unique=True, index=True)
    """:func:`username_key` of ``username``: unique, so names differing only in case clash."""
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    session_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Part of every session cookie; bumped on sign-out and password change, which ends them."""
    disabled: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When an administrator disabled the account (None: active): no sign-in, no token."""
    deleted: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    """When the account was closed with its screenings kept (it can never be enabled again)."""
    role: Mapped[str] = mapped_column(String(16), default="clinic", server_default="clinic")
    """``clinic`` (uploads visits, sees its site's), ``grader`` (the review queue) or ``admin``."""
    site: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The clinic a clinic user works at: their visits are filed under it and they see its visits."""

    screenings: Mapped[list[Screening]] = relationship(back_populates="user")

    @validates("username")
    def _set_key(self, _name: str, value: str) -> str:
        self.username_key = username_key(value)
        return value

    # Flask-Login protocol
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        """Whether the account may sign in and use its tokens (not disabled, not deleted)."""
        return self.disabled is None and self.deleted is None

    def get_id(self) -> str:
        """Flask-Login's alternative id ``"<public_id>:<session_version>"``."""
        return f"{self.public_id}:{self.session_version}"


class ApiToken(Base):
    """A bearer token for the REST API; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    user_public_id: Mapped[str] = mapped_column(String(32))
    """The owner's ``User.public_id``: a token works only while it matches (see find_token)."""
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    user: Mapped[User] = relationship()


class Screening(Base):
    """One graded photograph: the full result JSON plus the columns history pages filter on."""

    __tablename__ = "screenings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    eye: Mapped[str | None] = mapped_column(String(5), nullable=True)
    grade: Mapped[int] = mapped_column(Integer)
    referable: Mapped[bool] = mapped_column(Boolean)
    referable_probability: Mapped[float] = mapped_column(Float)
    gradable: Mapped[bool] = mapped_column(Boolean)
    synthetic: Mapped[bool] = mapped_column(Boolean, default=False)
    result_json: Mapped[str] = mapped_column(Text)
    photo_name: Mapped[str] = mapped_column(String(64))
    heatmap_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vessels_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lesions_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    FILE_COLUMNS = ("photo_name", "heatmap_name", "vessels_name", "lesions_name")
    """Every column naming a stored file (the start-up sweep keeps what these name)."""
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(64))
    model_sha256: Mapped[str] = mapped_column(String(64))
    visit_id: Mapped[int | None] = mapped_column(
        ForeignKey("visits.id", ondelete="CASCADE"), nullable=True, index=True
    )
    """The patient visit of this photo (None: a single photo from ``/screenings/new``)."""
    field: Mapped[str | None] = mapped_column(String(8), nullable=True)
    """``macula`` or ``disc`` (the centre of the photographed field), ``other``, or None."""

    user: Mapped[User] = relationship(back_populates="screenings")

    @classmethod
    def from_prediction(
        cls,
        prediction: Prediction,
        *,
        user_id: int,
        patient_id: str | None,
        eye: str | None,
        photo_name: str,
        heatmap_name: str | None,
        model_card: dict[str, Any] | None = None,
        overlay_names: dict[str, str] | None = None,
        segmentation: dict[str, Any] | None = None,
    ) -> Screening:
        """The row of a graded photograph: the SPEC result JSON (plus the card summary and the
        segmentation summary, if any), its files and the columns the history pages filter on.
        ``overlay_names``: stored file of each overlay (``vessels``, ``lesions``)."""
        result = prediction.to_dict()
        if model_card:
            result["model_card"] = model_card
        if segmentation:
            result["segmentation"] = segmentation
        overlays = overlay_names or {}
        model = prediction.model
        return cls(
            user_id=user_id,
            patient_id=patient_id,
            eye=eye,
            grade=prediction.grade,
            referable=prediction.referable,
            referable_probability=prediction.referable_probability,
            gradable=prediction.gradable,
            synthetic=prediction.synthetic,
            result_json=json.dumps(result),
            photo_name=photo_name,
            heatmap_name=heatmap_name,
            vessels_name=overlays.get("vessels"),
            lesions_name=overlays.get("lesions"),
            model_name=model.name[:128],
            model_version=model.version[:64],
            model_sha256=model.sha256[:64],
        )

    @property
    def result(self) -> dict[str, Any]:
        """The prediction result as the predictor returned it (SPEC "Prediction result")."""
        return json.loads(self.result_json)

    @property
    def prediction(self) -> Prediction:
        """The stored result as a typed :class:`~retinascreen.result.Prediction`."""
        return Prediction.from_dict(self.result)

    @property
    def model_card(self) -> dict[str, Any]:
        """The model-card summary frozen with the screening (empty when the model had none)."""
        card = self.result.get("model_card")
        return dict(card) if isinstance(card, dict) else {}

    def to_api(self) -> dict[str, Any]:
        """The REST representation: the prediction result plus id, patient, eye, time and the
        URLs of the heat map and the vessel and lesion overlays (null where there is none)."""
        data = self.result
        data.update(
            id=self.id,
            patient_id=self.patient_id,
            eye=self.eye,
            created=as_utc(self.created).isoformat() if self.created else None,
        )
        data.update(self.image_urls())
        return data

    def image_urls(self) -> dict[str, Any]:
        """``heatmap`` and ``masks`` (``vessels``, ``lesions``) API URLs, None where absent."""
        base = f"/api/v1/screenings/{self.id}"

        def url(name: str | None, file: str) -> str | None:
            return f"{base}/{file}" if name else None

        return {
            "heatmap": url(self.heatmap_name, "heatmap.png"),
            "masks": {
                "vessels": url(self.vessels_name, "vessels.png"),
                "lesions": url(self.lesions_name, "lesions.png"),
            },
        }


class AuditEvent(Base):
    """Who did what and when: sign-ins (success and failure), tokens and screenings."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(32), index=True)
    username: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class RateCounter(Base):
    """One fixed window of an abuse-limit counter (see ``web/limits.py``)."""

    __tablename__ = "rate_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[int] = mapped_column(Integer, index=True)


class Invite(Base):
    """A single-use registration invite; only the SHA-256 of the code is stored."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    used_by: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
