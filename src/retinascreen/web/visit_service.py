"""Visits: checking an upload of several photos, grading and storing them as one visit, who may
see what, the outcome, the review queue and graders' decisions (shared by pages and API)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ColumnElement, and_, exists, false, or_, select, true
from sqlalchemy.orm import Session, selectinload

from retinascreen.errors import RetinascreenError
from retinascreen.web.inputs import clean_patient_id
from retinascreen.web.models import Screening, User, as_utc, utcnow
from retinascreen.web.outcome import (
    EYES,
    UNRECORDED,
    HumanGrade,
    PhotoFinding,
    VisitOutcome,
    finding_of,
    machine_eye,
    review_reasons,
    visit_outcome,
)
from retinascreen.web.policy import Policy, load_policy
from retinascreen.web.security import audit
from retinascreen.web.service import GradedPhoto, grade_photo
from retinascreen.web.storage import PhotoStore
from retinascreen.web.visit_models import (
    FIELDS,
    Patient,
    Review,
    ReviewItem,
    Visit,
    role_of,
)

SLOTS = tuple(f"{eye}_{fld}" for eye in EYES for fld in FIELDS)
"""Upload field names: ``right_macula``, ``right_disc``, ``right_other``, ``left_...``."""
MAX_PHOTOS = 12
FIELD_NAMES = {"macula": "macula-centred", "disc": "disc-centred", "other": "other field"}


class Forbidden(RetinascreenError):
    status = 403


class Unprocessable(RetinascreenError):
    """Well-formed but not a visit that can be stored or reviewed (422)."""

    status = 422


@dataclass(frozen=True)
class PhotoUpload:
    eye: str
    field: str
    data: bytes
    filename: str | None

    @property
    def label(self) -> str:
        name = f" ({self.filename})" if self.filename else ""
        return f"{self.eye.capitalize()} eye, {FIELD_NAMES[self.field]} photo{name}"


def policy() -> Policy:
    """The app's screening policy (``SCREENING_POLICY``; default: the bundled ICO table)."""
    return load_policy(current_app.config.get("SCREENING_POLICY") or None)


# -- input ----------------------------------------------------------------------------------------
def clean_pseudonym(value: str | None) -> str:
    pseudonym = clean_patient_id(value)
    if not pseudonym:
        raise RetinascreenError(
            "Patient id is required: the programme's pseudonymous id (never a name)."
        )
    return pseudonym


def clean_visit_date(value: str | None) -> date:
    """ISO date (``YYYY-MM-DD``), default today (UTC); not in the future."""
    text = (value or "").strip()
    today = utcnow().date()
    if not text:
        return today
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise RetinascreenError("Visit date must be a date like 2026-12-07.") from None
    if len(text) != 10:
        raise RetinascreenError("Visit date must be a date like 2026-12-07.")
    if day > today + timedelta(days=1) or day.year < 1900:
        raise Unprocessable("Visit date must be a date like 2026-12-07, not in the future.")
    return day


def clean_site(user: User, value: str | None) -> str | None:
    """The visit's site: the clinic user's own site, else the one given (or none)."""
    if user.site:
        return user.site
    site = clean_patient_id(value)  # the same rule: printable, at most 64 characters
    return site


def check_uploads(uploads: list[PhotoUpload]) -> None:
    if not uploads:
        raise Unprocessable("Add at least one photograph (of either eye).")
    if len(uploads) > MAX_PHOTOS:
        raise Unprocessable(f"At most {MAX_PHOTOS} photographs per visit.")


# -- who sees what --------------------------------------------------------------------------------
def visible(user: User) -> ColumnElement[bool]:
    """The visits ``user`` may open: admin all; grader the queue's; clinic its site's (or, with
    no site, its own uploads)."""
    role = role_of(user)
    if role == "admin":
        return true()
    if role == "grader":
        return exists().where(ReviewItem.visit_id == Visit.id)
    if user.site:
        return or_(Visit.site == user.site, Visit.user_id == user.id)
    return and_(Visit.user_id == user.id) if user.id else false()


EAGER = (
    selectinload(Visit.photos),
    selectinload(Visit.reviews),
    selectinload(Visit.queue_items),
    selectinload(Visit.patient),
)
"""Load options for pages that show many visits' outcomes (one query per table, not per visit)."""


def find_visit(db: Session, user: User, public_id: str) -> Visit | None:
    """The visit with this public id if ``user`` may see it (else None: ids are not revealed)."""
    if len(public_id) != 32:
        return None
    return db.scalar(select(Visit).where(Visit.public_id == public_id, visible(user)))


def can_review(user: User) -> bool:
    return role_of(user) in ("grader", "admin")


def can_upload(user: User) -> bool:
    return role_of(user) in ("clinic", "admin")


# -- creating a visit -----------------------------------------------------------------------------
def create_visit(
    db: Session,
    user: User,
    uploads: list[PhotoUpload],
    *,
    pseudonym: str | None,
    visit_date: str | None,
    site: str | None,
) -> Visit:
    """Grade every photo, then store the visit, its photos and its queue item in one go.

    A bad photo refuses the whole visit (its message names the photo) and nothing is stored.
    """
    if not can_upload(user):
        raise Forbidden("Graders review visits; a clinic user uploads them.")
    patient_name = clean_pseudonym(pseudonym)
    day = clean_visit_date(visit_date)
    where = clean_site(user, site)
    check_uploads(uploads)
    graded = _grade_all(uploads)
    visit = Visit(patient=_patient(db, patient_name), site=where, visit_date=day, user_id=user.id)
    db.add(visit)
    _store_photos(db, user, visit, graded, pseudonym=patient_name, what=f"{len(graded)} photos")
    return visit


def add_intake_photo(
    db: Session,
    user: User,
    upload: PhotoUpload,
    *,
    pseudonym: str | None,
    day: date,
    on_stored: Callable[[Screening], None] | None = None,
) -> Visit:
    """Grade a photo from an integration (PACS, watched folder) and store it in its visit.

    The visit is this account's visit of the patient on ``day`` (created on the first photo),
    so a patient's photos of one day form one visit; a photo without a patient id gets a visit
    of its own. The review queue is recomputed with the new photo. ``on_stored(screening)`` runs
    after the rows are flushed and before the one commit (the intake ledger links its row there).
    """
    if not can_upload(user):
        raise Forbidden("Graders review visits; a clinic user uploads them.")
    name = clean_patient_id(pseudonym) or None
    graded = _grade_all([upload])
    patient = _patient(db, name) if name else None
    where = clean_site(user, None)
    visit = None
    if patient is not None and patient.id is not None:
        visit = db.scalar(
            select(Visit)
            .where(
                Visit.patient_id == patient.id,
                Visit.visit_date == day,
                Visit.user_id == user.id,
                Visit.migrated == false(),
                Visit.site.is_(None) if where is None else Visit.site == where,
            )
            .order_by(Visit.id)
            .limit(1)
        )
    if visit is None:
        visit = Visit(patient=patient, site=where, visit_date=day, user_id=user.id)
        db.add(visit)
    _store_photos(
        db,
        user,
        visit,
        graded,
        pseudonym=name,
        what=f"1 photo ({upload.label})",
        on_stored=on_stored,
    )
    return visit


def _grade_all(uploads: list[PhotoUpload]) -> list[tuple[PhotoUpload, GradedPhoto]]:
    """Grade every photo first; a bad one raises, its message naming the photo."""
    graded: list[tuple[PhotoUpload, GradedPhoto]] = []
    for upload in uploads:
        try:
            graded.append((upload, grade_photo(upload.data, upload.filename)))
        except RetinascreenError as exc:
            exc.args = (f"{upload.label}: {exc}",)
            raise
    return graded


def _patient(db: Session, pseudonym: str) -> Patient:
    patient = db.scalar(select(Patient).where(Patient.pseudonym == pseudonym))
    if patient is None:
        patient = Patient(pseudonym=pseudonym)
        db.add(patient)
    return patient


def _store_photos(
    db: Session,
    user: User,
    visit: Visit,
    graded: list[tuple[PhotoUpload, GradedPhoto]],
    *,
    pseudonym: str | None,
    what: str,
    on_stored: Callable[[Screening], None] | None = None,
) -> None:
    """Store ``graded`` as photos of ``visit`` (files staged, rows, queue item, audit) and
    commit once; on any failure nothing is stored."""
    files: dict[str, bytes] = {}
    rows: list[Screening] = []
    for upload, photo in graded:
        row = photo.to_screening(
            files,
            user_id=user.id,
            patient_id=pseudonym,
            eye=upload.eye if upload.eye in EYES else None,
        )
        row.field = upload.field
        visit.photos.append(row)
        rows.append(row)
    store: PhotoStore = current_app.extensions["retinascreen.photos"]
    try:
        with store.staged(files):
            db.flush()
            reasons = review_reasons(findings(visit), policy(), sample_key=visit.public_id)
            item = open_item(visit)
            if item is not None and reasons:
                item.reasons_json = json.dumps(reasons)
            elif item is not None:  # a new photo settled what queued it, before any review
                visit.queue_items.remove(item)
            elif reasons:
                db.add(ReviewItem(visit=visit, reasons_json=json.dumps(reasons)))
            audit(
                db,
                "visit",
                user=user,
                detail=f"visit {visit.public_id}: {what}"
                + (f", queued ({', '.join(r['rule'] for r in reasons)})" if reasons else ""),
            )
            if on_stored is not None:
                for row in rows:
                    on_stored(row)
            db.commit()
    except BaseException:
        db.rollback()
        raise


# -- outcome --------------------------------------------------------------------------------------
def findings(visit: Visit) -> list[PhotoFinding]:
    return [
        finding_of(p.result, photo_id=p.id, eye=p.eye or UNRECORDED, field=p.field)
        for p in visit.photos
    ]


def expected_eyes(visit: Visit) -> tuple[str, ...]:
    """Both eyes for a visit; only the photographed one for a migrated single photo."""
    return () if visit.migrated else EYES


def required_fields(visit: Visit) -> tuple[str, ...]:
    """The policy's required fields; none for a migrated single photo (no field recorded)."""
    return () if visit.migrated else policy().required_fields


def latest_reviews(visit: Visit) -> dict[str, Review]:
    latest: dict[str, Review] = {}
    for review in visit.reviews:  # ordered by id: the last one wins
        latest[review.eye] = review
    return latest


def outcome_of(visit: Visit) -> VisitOutcome:
    human = {
        eye: HumanGrade(
            gradable=r.gradable,
            grade=r.grade,
            maculopathy=r.maculopathy,
            grader=r.grader_name,
            note=r.note,
            when=as_utc(r.created).isoformat() if r.created else "",
            retake=r.retake,
        )
        for eye, r in latest_reviews(visit).items()
    }
    return visit_outcome(
        findings(visit),
        human,
        policy(),
        eyes=expected_eyes(visit),
        required=required_fields(visit),
    )


def open_item(visit: Visit) -> ReviewItem | None:
    return next((item for item in visit.queue_items if item.closed is None), None)


# -- reviews --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EyeDecision:
    gradable: bool
    grade: int | None
    maculopathy: bool
    retake: bool = False


def clean_decision(eye: str, data: Mapping[str, Any]) -> EyeDecision:
    """One eye's decision from a form or JSON: gradable (bool), grade 0-4 when gradable,
    maculopathy (bool), retake (bool: new photographs needed; always so when ungradable)."""
    gradable = data.get("gradable")
    if not isinstance(gradable, bool):
        raise RetinascreenError(f"{eye} eye: 'gradable' must be true or false.")
    grade = data.get("grade")
    if isinstance(grade, float) and grade.is_integer():  # JSON's 4.0 is the integer 4
        grade = int(grade)
    if gradable and (
        isinstance(grade, bool) or not isinstance(grade, int) or grade not in range(5)
    ):
        raise RetinascreenError(f"{eye} eye: a gradable eye needs a grade from 0 to 4.")
    if not gradable and grade is not None:
        raise RetinascreenError(f"{eye} eye: an ungradable eye has no grade (send null).")
    maculopathy = data.get("maculopathy", False)
    if not isinstance(maculopathy, bool):
        raise RetinascreenError(f"{eye} eye: 'maculopathy' must be true or false.")
    retake = data.get("retake", False)
    if not isinstance(retake, bool):
        raise RetinascreenError(f"{eye} eye: 'retake' must be true or false.")
    return EyeDecision(
        gradable, grade if gradable else None, maculopathy and gradable, retake or not gradable
    )


def record_review(
    db: Session,
    grader: User,
    visit: Visit,
    decisions: Mapping[str, EyeDecision],
    note: str,
) -> VisitOutcome:
    """Store a grader's decision per eye (the machine's view kept beside it), close the visit's
    queue item, and write the audit log (who, when, what changed)."""
    if not can_review(grader):
        raise Forbidden("Only graders and administrators review visits.")
    if not decisions:
        raise RetinascreenError("Decide at least one eye.")
    if len(note) > 2000:
        raise RetinascreenError("The note is at most 2000 characters.")
    before = outcome_of(visit)
    photos = findings(visit)
    changes = []
    for eye, decision in decisions.items():
        eye_photos = [p for p in photos if p.eye == eye]
        if not eye_photos and eye not in expected_eyes(visit):
            raise Unprocessable(f"This visit has no {eye} eye.")
        machine = machine_eye(eye_photos, required_fields(visit))
        visit.reviews.append(
            Review(
                eye=eye,
                grader_id=grader.id,
                grader_name=grader.username,
                gradable=decision.gradable,
                grade=decision.grade,
                maculopathy=decision.maculopathy,
                retake=decision.retake,
                note=note,
                machine_json=json.dumps(machine.to_dict()),
            )
        )
        was = next(e.final for e in before.eyes if e.eye == eye)
        changes.append(
            f"{eye}: {_describe(was.gradable, was.grade, was.maculopathy, was.retake)} -> "
            f"{_describe(decision.gradable, decision.grade, decision.maculopathy, decision.retake)}"
        )
    item = open_item(visit)
    if item is not None:
        item.closed = utcnow()
        item.closed_by = grader.id
    db.flush()
    after = outcome_of(visit)
    detail = (
        f"visit {visit.public_id}: {'; '.join(changes)}; outcome {before.rule.id} -> "
        f"{after.rule.id}" + (f"; note: {note[:200]}" if note else "")
    )
    audit(db, "review", user=grader, detail=detail)
    db.commit()
    return after


def _describe(gradable: bool, grade: int | None, maculopathy: bool, retake: bool) -> str:
    if not gradable:
        return "ungradable"
    return (
        f"grade {grade}" + (", maculopathy" if maculopathy else "") + (", retake" if retake else "")
    )


def queue(db: Session, *, open_only: bool = True) -> list[ReviewItem]:
    where = [ReviewItem.closed.is_(None)] if open_only else []
    return list(db.scalars(select(ReviewItem).where(*where).order_by(ReviewItem.created)).all())


def photo_of(visit: Visit, photo_id: int) -> Screening | None:
    return next((p for p in visit.photos if p.id == photo_id), None)


def eyes_photos(visit: Visit) -> dict[str, list[Screening]]:
    """The visit's photos by eye, right eye first."""
    grouped: dict[str, list[Screening]] = {eye: [] for eye in expected_eyes(visit)}
    for photo in visit.photos:
        grouped.setdefault(photo.eye or UNRECORDED, []).append(photo)
    return grouped


def iter_uploads(files: Iterable[tuple[str, Any]]) -> list[PhotoUpload]:
    """The uploads of a multipart body: each field named ``<eye>_<field>`` may repeat; other
    fields are refused (a misspelt name must not drop a photo silently)."""
    uploads = []
    for name, storage in files:
        if name not in SLOTS:
            raise RetinascreenError(f"Unknown photo field {name[:40]!r}: use {', '.join(SLOTS)}.")
        data = storage.read()
        if not data and not storage.filename:
            continue  # an empty file input of the form
        eye, _, fld = name.partition("_")
        uploads.append(PhotoUpload(eye, fld, data, storage.filename or None))
    return uploads
