"""The store's tables as the service reads and writes them: their columns, and which need converting.

The schema itself is made by the migrations (store/migrations/versions/, from store/models.py, which
only Alembic and the tests load); tests/store/test_schema.py checks this module against models.py.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from .db import Json, Kind
from .records import BuildRecord

# A column's name says its kind in every table that has it (created_at is a datetime everywhere).
KINDS: dict[str, Kind] = {
    "created_at": Kind.DATETIME,
    "started_at": Kind.DATETIME,
    "finished_at": Kind.DATETIME,
    "deadline": Kind.DATETIME,
    "built_at": Kind.DATETIME,
    "last_requested_at": Kind.DATETIME,
    "lease_until": Kind.DATETIME,
    "requesters": Kind.JSON,
    "phase_times": Kind.JSON,
    "cached": Kind.BOOLEAN,
    "cancel_requested": Kind.BOOLEAN,
}

BUILD_COLUMNS = (
    "id",
    "image",
    "provider",
    "repository",
    "build_slug",
    "ref",
    "commit",
    "content_provider",
    "spec_key",
    "requester",
    "requesters",
    "status",
    "cached",
    "error_code",
    "error_message",
    "created_at",
    "started_at",
    "finished_at",
    "phase_times",
    "last_event_id",
    "owner",
    "pid",
    "log_path",
    "log_event_base",
    "deadline",
)
IMAGE_COLUMNS = ("image", "provider", "build_slug", "built_at", "last_requested_at", "requesters")
EVENT_COLUMNS = (
    "build_id",
    "event_id",
    "phase",
    "message",
    "image_name",
    "code",
    "queue_position",
    "created_at",
)


def build_row(record: BuildRecord) -> dict[str, Any]:
    """`record` as the parameters of a builds row (BuildRecord's fields are its columns)."""
    row = asdict(record)
    row["requesters"] = Json(list(record.requesters))
    row["phase_times"] = Json(record.phase_times)
    return row


def names(columns: tuple[str, ...], prefix: str = "") -> str:
    """`a, b, "commit"` (quoted where a dialect reserves the word), each after `prefix` (`b.`)."""
    return ", ".join(prefix + quoted(c) for c in columns)


def params(columns: tuple[str, ...]) -> str:
    """`:a, :b, :commit`"""
    return ", ".join(f":{c}" for c in columns)


def quoted(column: str) -> str:
    return f'"{column}"' if column in RESERVED else column


RESERVED = {"commit", "key"}  # column names a dialect reserves (SQLAlchemy quoted them too)
