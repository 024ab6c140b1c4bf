"""Builds, their requesters and their events.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from binder_service.store.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "builds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("image", sa.String(512), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("repository", sa.Text(), nullable=False),
        sa.Column("build_slug", sa.Text(), nullable=False),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("commit", sa.String(256), nullable=False),
        sa.Column("content_provider", sa.String(64), nullable=False),
        sa.Column("requester", sa.String(256), nullable=True),
        sa.Column("requesters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("phase_times", sa.JSON(), nullable=False),
        sa.Column("last_event_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_builds"),
    )
    op.create_index("ix_builds_cached_created_at", "builds", ["cached", "created_at"])
    op.create_index("ix_builds_created_at", "builds", ["created_at"])
    op.create_index("ix_builds_status_cached_created_at", "builds", ["status", "cached", "created_at"])
    op.create_index("ix_builds_image_status", "builds", ["image", "status"])
    op.create_index("ix_builds_finished_at", "builds", ["finished_at"])
    op.create_table(
        "build_requesters",
        sa.Column("build_id", sa.String(32), nullable=False),
        sa.Column("requester", sa.String(256), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("build_id", "requester", name="pk_build_requesters"),
    )
    op.create_index(
        "ix_build_requesters_requester_cached_created_at",
        "build_requesters",
        ["requester", "cached", "created_at"],
    )
    op.create_table(
        "events",
        sa.Column("build_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("image_name", sa.String(512), nullable=True),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("queue_position", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("build_id", "event_id", name="pk_events"),
    )


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("build_requesters")
    op.drop_table("builds")
