"""The one adapter between the integrations (PACS pull, watched folder) and the web app's storage.

A photo that arrives from a PACS or a camera folder is graded and stored as a photo of a visit,
exactly as the visit upload does (:mod:`retinascreen.web.visit_service`: same checks, rows,
files and review queue), owned by one account, in the same database as the web app: a
patient's photos of one day form one visit, with their eye and field. Beside them, the intake
ledger (table ``intake_files``, :mod:`retinascreen.web.intake_models`, migration 0006)
remembers every photo taken in: its source key (a content SHA-256 or a DICOM SOP Instance UID),
what became of it, the screening (photo) it became and what was pushed back. The ledger row
commits in the same transaction as the photo, so a photo is either screened and recorded, or
neither: a kill -9 at any moment never loses a photo nor screens one twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from retinascreen.errors import ConfigError
from retinascreen.web.intake_models import IntakeFile
from retinascreen.web.models import Screening, User, username_key, utcnow
from retinascreen.web.visit_models import role_of


@dataclass(frozen=True)
class Photo:
    """A photo to take in: its bytes and what its source says about it."""

    data: bytes
    name: str
    source: str
    key: str
    sha256: str
    patient_id: str | None = None
    eye: str | None = None
    visit_date: date | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    field: str | None = None
    """What the source says about the photographed field (a DICOM code meaning), if anything."""


def field_of(said: str | None, name: str) -> str:
    """The visit field (macula, disc, other) of a photo: from what its source says, else from
    its name (``..._disc...``, ``..._macula...``), else ``macula``: the single field most
    programmes photograph (the one the screening policy requires by default)."""
    for text in (said, name):
        words = (text or "").lower()
        if "disc" in words or "optic" in words or "papilla" in words:
            return "disc"
        if "macula" in words or "fovea" in words:
            return "macula"
        if text is said and said:
            return "other"  # the header names another field
    return "macula"


class ScreeningSink:
    """Screens photos into the web app's database as photos of visits owned by ``username``."""

    def __init__(
        self,
        username: str,
        *,
        instance: Path | None = None,
        database_url: str | None = None,
        model: str | None = None,
        predictor: Any = None,
    ) -> None:
        from retinascreen.web import create_app
        from retinascreen.web.config import database_url as resolve_url
        from retinascreen.web.config import default_instance_path
        from retinascreen.web.db import make_engine, upgrade

        instance = Path(instance or default_instance_path()).resolve()
        url = resolve_url({"DATABASE_URL": database_url}, instance)
        engine = make_engine(url)
        try:
            upgrade(engine)  # idempotent (ledger included); never the photo sweep
        finally:
            engine.dispose()
        config: dict[str, Any] = {
            "INSTANCE_PATH": instance,
            "DATABASE_URL": url,
            "AUTO_MIGRATE": False,
        }
        if model:
            config["MODEL"] = model
        self.app: Flask = create_app(config, predictor=predictor)
        with self.session() as db:
            user = db.scalar(select(User).where(User.username_key == username_key(username)))
            if user is None or not user.is_active:
                raise ConfigError(
                    f"no active account named {username!r}: create it first "
                    f"(retinascreen admin create {username})"
                )
            if role_of(user) == "grader":
                raise ConfigError(
                    f"account {username!r} is a grader: photos are taken in by a clinic "
                    "account or an administrator"
                )
            self.user_id = user.id
        self.username = username
        self.publish_committed()

    def publish_committed(self) -> list[str]:
        """Publish the staged files of screenings this ledger committed (a kill -9 between the
        commit and the rename leaves them staged); returns their names.

        Unlike the web app's start-up sweep this touches only files whose rows exist, so it is
        safe while the web app is serving uploads.
        """
        import os

        store = self.app.extensions["retinascreen.photos"]
        columns = [getattr(Screening, name) for name in Screening.FILE_COLUMNS]
        with self.session() as db:
            ids = select(IntakeFile.screening_id).where(IntakeFile.screening_id.is_not(None))
            rows = db.execute(select(*columns).where(Screening.id.in_(ids))).all()
        published = []
        for name in (n for row in rows for n in row if n):
            staged, final = store.staging_path(name), store.path(name)
            if staged.exists() and not final.exists():
                os.replace(staged, final)
                published.append(name)
        return published

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A database session inside an app context (and a request context for the audit log)."""
        from retinascreen.web.db import session

        environ = {"REMOTE_ADDR": "local-intake"}
        with self.app.test_request_context("/intake", environ_base=environ):
            yield session()

    def seen(self, source: str, key: str) -> IntakeFile | None:
        """The ledger row of ``(source, key)``, if that photo was ever taken in."""
        with self.session() as db:
            return db.scalar(
                select(IntakeFile).where(IntakeFile.source == source, IntakeFile.key == key)
            )

    def rows(self, source: str) -> list[IntakeFile]:
        """Every ledger row of ``source``, oldest first."""
        with self.session() as db:
            return list(
                db.scalars(
                    select(IntakeFile).where(IntakeFile.source == source).order_by(IntakeFile.id)
                )
            )

    def store(self, photo: Photo) -> IntakeFile:
        """Screen ``photo`` into its visit and store it with its ledger row in one transaction.

        The photo joins the account's visit of its patient on its day (created by the first
        one; :func:`retinascreen.web.visit_service.add_intake_photo`), with its eye and field
        (:func:`field_of`). A photo whose ``(source, key)`` is already in the ledger is not
        screened again: its row is returned. Bad input (not a fundus photo, corrupt, a patient
        id that is not one...) is recorded as ``failed`` with the message, so it is not retried
        either; a truncated or empty file (perhaps still being written) and other errors
        propagate, and nothing is stored.
        """
        from retinascreen.errors import (
            EmptyImageError,
            ImageError,
            NotFundusError,
            RetinascreenError,
            TruncatedImageError,
        )
        from retinascreen.web.inputs import clean_patient_id
        from retinascreen.web.visit_service import PhotoUpload, add_intake_photo

        earlier = self.seen(photo.source, photo.key)
        if earlier is not None:
            return earlier
        row = IntakeFile(
            source=photo.source,
            key=photo.key,
            sha256=photo.sha256,
            name=photo.name[-255:],
            state="screened",
            patient_id=photo.patient_id,
            eye=photo.eye,
            visit_date=photo.visit_date,
            study_uid=photo.study_uid,
            series_uid=photo.series_uid,
            sop_uid=photo.sop_uid,
        )
        upload = PhotoUpload(
            photo.eye if photo.eye in ("left", "right") else "unknown",
            field_of(photo.field, photo.name),
            photo.data,
            photo.name,
        )

        def link(screening: Screening) -> None:  # flushed, so it has its id; not yet committed
            row.screening_id = screening.id

        with self.session() as db:
            user = db.get(User, self.user_id)
            assert user is not None
            try:
                clean_patient_id(photo.patient_id)
            except RetinascreenError as exc:
                return self._failed(db, row, f"patient id: {exc}")
            db.add(row)
            try:
                add_intake_photo(
                    db,
                    user,
                    upload,
                    pseudonym=photo.patient_id,
                    day=photo.visit_date or utcnow().date(),
                    on_stored=link,
                )
            except (TruncatedImageError, EmptyImageError):  # maybe still being written
                db.rollback()
                raise
            except (ImageError, NotFundusError) as exc:
                db.rollback()
                return self._failed(db, row, str(exc))
            except IntegrityError:  # another process took this photo in meanwhile
                db.rollback()
                found = self.seen(photo.source, photo.key)
                if found is None:
                    raise
                return found
            return row

    def _failed(self, db: Session, row: IntakeFile, message: str) -> IntakeFile:
        failed = IntakeFile(
            **{
                c.key: getattr(row, c.key)
                for c in IntakeFile.__table__.columns
                if c.key not in ("id", "created")
            }
        )
        failed.state, failed.error, failed.screening_id = "failed", message[:2000], None
        db.add(failed)
        try:
            db.commit()
        except IntegrityError:
            db.rollback()
            found = self.seen(row.source, row.key)
            assert found is not None
            return found
        return failed

    def screening(self, screening_id: int) -> Screening | None:
        """A stored screening (detached, with its result)."""
        with self.session() as db:
            return db.get(Screening, screening_id)

    def mark_pushed(self, row_ids: list[int]) -> None:
        """Record that the results of these ledger rows are in the PACS."""
        with self.session() as db:
            for row in db.scalars(select(IntakeFile).where(IntakeFile.id.in_(row_ids))):
                row.pushed = utcnow()
            db.commit()

    def close(self) -> None:
        """Close the app's database connections."""
        from retinascreen.web import dispose

        dispose(self.app)
