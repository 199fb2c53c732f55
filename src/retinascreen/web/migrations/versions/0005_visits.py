"""Patients, visits, the review queue and graders' decisions; roles and sites of accounts.

- ``patients`` (a pseudonym, never a name), ``visits`` (patient, date, site, uploader),
  ``review_items`` (the queue) and ``reviews`` (a grader's decision per eye, with the
  machine's result kept beside it).
- ``screenings.visit_id`` and ``screenings.field`` (macula, disc, other): a screening is now a
  photo of a visit. Every existing screening becomes a one-photo visit (``migrated``) dated the
  day it was made, under its patient id (one patient row per distinct id; none if it had none).
- ``users.role`` (clinic, grader, admin; administrators become ``admin``) and ``users.site``.

Downgrade drops all of it; the screenings (photos) stay, with their patient id and eye.

Revision ID: 0005_visits
Revises: 0004_account_identity
Create Date: 2026-12-07
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005_visits"
down_revision = "0004_account_identity"
branch_labels = None
depends_on = None

screenings = sa.table(
    "screenings",
    sa.column("id", sa.Integer),
    sa.column("user_id", sa.Integer),
    sa.column("created", sa.DateTime(timezone=True)),
    sa.column("patient_id", sa.String),
    sa.column("visit_id", sa.Integer),
)
patients = sa.table(
    "patients",
    sa.column("id", sa.Integer),
    sa.column("pseudonym", sa.String),
    sa.column("created", sa.DateTime(timezone=True)),
)
visits = sa.table(
    "visits",
    sa.column("id", sa.Integer),
    sa.column("public_id", sa.String),
    sa.column("patient_id", sa.Integer),
    sa.column("site", sa.String),
    sa.column("visit_date", sa.Date),
    sa.column("created", sa.DateTime(timezone=True)),
    sa.column("user_id", sa.Integer),
    sa.column("migrated", sa.Boolean),
)
users = sa.table("users", sa.column("is_admin", sa.Boolean), sa.column("role", sa.String))


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pseudonym", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_patients_pseudonym", "patients", ["pseudonym"], unique=True)
    op.create_table(
        "visits",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column(
            "patient_id",
            sa.Integer,
            sa.ForeignKey("patients.id", ondelete="RESTRICT"),
            nullable=True,
        ),
        sa.Column("site", sa.String(64), nullable=True),
        sa.Column("visit_date", sa.Date, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("migrated", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    for column, unique in (
        ("public_id", True),
        ("patient_id", False),
        ("site", False),
        ("visit_date", False),
        ("created", False),
        ("user_id", False),
    ):
        op.create_index(f"ix_visits_{column}", "visits", [column], unique=unique)
    op.create_table(
        "review_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "visit_id", sa.Integer, sa.ForeignKey("visits.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("reasons_json", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "closed_by", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
    )
    op.create_index("ix_review_items_visit_id", "review_items", ["visit_id"])
    op.create_index("ix_review_items_created", "review_items", ["created"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "visit_id", sa.Integer, sa.ForeignKey("visits.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("eye", sa.String(5), nullable=False),
        sa.Column(
            "grader_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True
        ),
        sa.Column("grader_name", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gradable", sa.Boolean, nullable=False),
        sa.Column("grade", sa.Integer, nullable=True),
        sa.Column("maculopathy", sa.Boolean, nullable=False),
        sa.Column("retake", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("machine_json", sa.Text, nullable=False),
    )
    op.create_index("ix_reviews_visit_id", "reviews", ["visit_id"])
    op.create_index("ix_reviews_created", "reviews", ["created"])

    with op.batch_alter_table("screenings") as batch:
        batch.add_column(sa.Column("visit_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("field", sa.String(8), nullable=True))
        batch.create_foreign_key(
            "fk_screenings_visit_id", "visits", ["visit_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_screenings_visit_id", ["visit_id"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("role", sa.String(16), nullable=False, server_default="clinic"))
        batch.add_column(sa.Column("site", sa.String(64), nullable=True))
    op.get_bind().execute(users.update().where(users.c.is_admin == sa.true()).values(role="admin"))
    _one_photo_visits()


def _one_photo_visits() -> None:
    """Every screening becomes a visit of its own (its day, its patient, no site)."""
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            screenings.c.id, screenings.c.user_id, screenings.c.created, screenings.c.patient_id
        ).order_by(screenings.c.id)
    ).all()
    now = datetime.now(UTC)
    patient_ids: dict[str, int] = {}
    for screening_id, user_id, created, pseudonym in rows:
        patient = None
        if pseudonym:
            patient = patient_ids.get(pseudonym)
            if patient is None:
                patient = connection.execute(
                    patients.insert()
                    .values(pseudonym=pseudonym, created=created or now)
                    .returning(patients.c.id)
                ).scalar_one()
                patient_ids[pseudonym] = patient
        visit = connection.execute(
            visits.insert()
            .values(
                public_id=secrets.token_hex(16),
                patient_id=patient,
                site=None,
                visit_date=(created or now).date(),
                created=created or now,
                user_id=user_id,
                migrated=True,
            )
            .returning(visits.c.id)
        ).scalar_one()
        connection.execute(
            screenings.update().where(screenings.c.id == screening_id).values(visit_id=visit)
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("site")
        batch.drop_column("role")
    with op.batch_alter_table("screenings") as batch:
        batch.drop_index("ix_screenings_visit_id")
        batch.drop_constraint("fk_screenings_visit_id", type_="foreignkey")
        batch.drop_column("field")
        batch.drop_column("visit_id")
    op.drop_table("reviews")
    op.drop_table("review_items")
    op.drop_table("visits")
    op.drop_table("patients")
