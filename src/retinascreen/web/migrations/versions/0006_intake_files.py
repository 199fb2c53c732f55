"""The intake ledger (``intake_files``) of ``pacs pull`` and ``watch``, now owned by Alembic.

Issue 26 created it with ``create_all`` on first use, so a database that already ran an
integration has it: then only the revision is recorded (same columns, indexes and unique key).
Downgrade drops it (the screenings it led to stay).

Revision ID: 0006_intake_files
Revises: 0005_visits
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_intake_files"
down_revision = "0005_visits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("intake_files"):
        return  # made by an integration before this migration existed
    op.create_table(
        "intake_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("screening_id", sa.Integer, nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("eye", sa.String(5), nullable=True),
        sa.Column("visit_date", sa.Date, nullable=True),
        sa.Column("study_uid", sa.String(64), nullable=True),
        sa.Column("series_uid", sa.String(64), nullable=True),
        sa.Column("sop_uid", sa.String(64), nullable=True),
        sa.Column("pushed", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("source", "key", name="uq_intake_source_key"),
    )
    op.create_index("ix_intake_files_sha256", "intake_files", ["sha256"])
    op.create_index("ix_intake_files_screening_id", "intake_files", ["screening_id"])


def downgrade() -> None:
    op.drop_table("intake_files")
