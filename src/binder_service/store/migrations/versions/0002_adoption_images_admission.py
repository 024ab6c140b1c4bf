"""What adoption needs on a build (owner, process, log, deadline, spec), the images table, admission.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from binder_service.store.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("builds") as batch:
        batch.add_column(sa.Column("spec_key", sa.Text(), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("log_path", sa.Text(), nullable=True))
        batch.add_column(sa.Column("log_event_base", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("deadline", UtcDateTime(), nullable=True))
    op.create_table(
        "images",
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("build_slug", sa.Text(), nullable=False),
        sa.Column("built_at", UtcDateTime(), nullable=True),
        sa.Column("last_requested_at", UtcDateTime(), nullable=False),
        sa.Column("requesters", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("image", name="pk_images"),
    )
    op.create_index("ix_images_last_requested_at", "images", ["last_requested_at"])
    op.create_table(
        "requests",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True),
        sa.Column("requester", sa.String(256), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_requests"),
    )
    op.create_index("ix_requests_requester_at", "requests", ["requester", "at"])


def downgrade() -> None:
    op.drop_table("requests")
    op.drop_table("images")
    with op.batch_alter_table("builds") as batch:
        for column in ("deadline", "log_event_base", "log_path", "pid", "owner", "spec_key"):
            batch.drop_column(column)
