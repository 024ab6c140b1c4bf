"""Admission places: the places running builds hold under per-user and per-repository limits.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from binder_service.store.models import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admission_places",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("ticket", sa.String(32), nullable=False),
        sa.Column("key", sa.String(320), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("lease_until", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_admission_places"),
    )
    op.create_index("ix_admission_places_key_lease_until", "admission_places", ["key", "lease_until"])
    op.create_index("ix_admission_places_ticket", "admission_places", ["ticket"])
    op.create_index("ix_admission_places_owner", "admission_places", ["owner"])


def downgrade() -> None:
    op.drop_table("admission_places")
