"""Build leases: one row per image being built, renewed by the replica that runs it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from binder_service.store.models import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "build_leases",
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("build_id", sa.String(32), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("lease_until", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("image", name="pk_build_leases"),
    )
    op.create_index("ix_build_leases_owner", "build_leases", ["owner"])
    op.create_index("ix_build_leases_build_id", "build_leases", ["build_id"])


def downgrade() -> None:
    op.drop_table("build_leases")
