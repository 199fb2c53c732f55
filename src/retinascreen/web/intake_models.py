"""The intake ledger's table (``intake_files``): every photo an integration (PACS pull, watched
folder) took in, in the app's metadata so Alembic (migration 0006) owns it like every table."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Date, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from retinascreen.web.models import Base, utcnow


class IntakeFile(Base):
    """One photo an integration took in, keyed by ``(source, key)``."""

    __tablename__ = "intake_files"
    __table_args__ = (UniqueConstraint("source", "key", name="uq_intake_source_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))  # "watch" | "pacs"
    key: Mapped[str] = mapped_column(String(128))  # content sha256 (watch), SOP UID (pacs)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))  # file path or DICOM label, for messages
    state: Mapped[str] = mapped_column(String(16))  # "screened" | "failed"
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    screening_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    patient_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    eye: Mapped[str | None] = mapped_column(String(5), nullable=True)
    visit_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    study_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    series_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sop_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pushed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def visit(self) -> str:
        """The visit this photo belongs to: patient and day (``?`` where unknown)."""
        day = self.visit_date.isoformat() if self.visit_date else "?"
        return f"{self.patient_id or '?'}/{day}"
