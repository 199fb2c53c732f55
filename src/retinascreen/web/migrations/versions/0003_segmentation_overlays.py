"""Vessel and lesion overlays of each screening (stored files, like the heat map).

Revision ID: 0003_segmentation_overlays
Revises: 0001_initial
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_segmentation_overlays"
down_revision = "0002_sessions_limits_invites"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("screenings") as batch:
        batch.add_column(sa.Column("vessels_name", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lesions_name", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("screenings") as batch:
        batch.drop_column("lesions_name")
        batch.drop_column("vessels_name")
