"""The build store's tables: builds, who asked for them, their events, images, admission records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out (SQLite keeps no zone and gives naive ones back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "pk": "pk_%(table_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        }
    )


class BuildRow(Base):
    """One build (or one answer from an existing image, `cached`). Rewritten whole on every change."""

    __tablename__ = "builds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    image: Mapped[str] = mapped_column(String(512))
    provider: Mapped[str] = mapped_column(String(32))
    repository: Mapped[str] = mapped_column(Text)  # what repo2docker fetches
    build_slug: Mapped[str] = mapped_column(Text)  # the repository's stable identity
    ref: Mapped[str] = mapped_column(Text)
    commit: Mapped[str] = mapped_column(String(256))
    content_provider: Mapped[str] = mapped_column(String(64), default="Git")
    spec_key: Mapped[str | None] = mapped_column(Text, nullable=True)  # `<provider>/<repo>` (quotas)
    requester: Mapped[str | None] = mapped_column(String(256), nullable=True)
    requesters: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16))
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    phase_times: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # phase -> first seen (ISO)
    last_event_id: Mapped[int] = mapped_column(Integer, default=0)
    # Who runs it (a replica's id) and, for a local build, its process group and durable log:
    # what a restarted service needs to adopt it.
    owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    log_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The last event id before the process started: its log replays into the same event ids after it.
    log_event_base: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # keeps its timeout

    __table_args__ = (
        # The list is newest first, filtered by cached / status: each filter walks an index backwards.
        Index(None, "cached", "created_at"),
        Index(None, "created_at"),
        Index(None, "status", "cached", "created_at"),
        Index(None, "image", "status"),
        Index(None, "finished_at"),
    )


class BuildRequesterRow(Base):
    """Who asked for a build: a user's list walks (requester, created_at) instead of every build."""

    __tablename__ = "build_requesters"

    build_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requester: Mapped[str] = mapped_column(String(256), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (Index(None, "requester", "cached", "created_at"),)


class EventRow(Base):
    """One event of one build; ids count up from 1 within the build."""

    __tablename__ = "events"

    build_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    phase: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    image_name: Mapped[str | None] = mapped_column(String(512), nullable=True)
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    queue_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ImageRow(Base):
    """An image the service built or answered with: what registry garbage collection keeps or drops."""

    __tablename__ = "images"

    image: Mapped[str] = mapped_column(String(512), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    build_slug: Mapped[str] = mapped_column(Text)
    built_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    requesters: Mapped[list[str]] = mapped_column(JSON, default=list)

    __table_args__ = (Index(None, "last_requested_at"),)


class RequestRow(Base):
    """One build request by a user, for a request rate that holds across replicas (admission)."""

    __tablename__ = "requests"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    requester: Mapped[str] = mapped_column(String(256))
    at: Mapped[float] = mapped_column(Float)  # unix time

    __table_args__ = (Index(None, "requester", "at"),)


class LeaseRow(Base):
    """Which build of an image runs, where, while its owner renews the lease: the one place that says
    "being built" across replicas (one row per image: claiming it is atomic) and "its replica is alive"."""

    __tablename__ = "build_leases"

    image: Mapped[str] = mapped_column(String(512), primary_key=True)
    build_id: Mapped[str] = mapped_column(String(32))
    owner: Mapped[str] = mapped_column(String(64))
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime)
    # Set by another replica asked to cancel the build; the owner sees it when it renews (0005).
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (Index(None, "owner"), Index(None, "build_id"))


class PlaceRow(Base):
    """One place a running build holds under a limit (`user:<name>`, `rule:<pattern>`), across replicas:
    admission counts the live ones in a locked transaction, so two replicas never both take the last."""

    __tablename__ = "admission_places"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    ticket: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(320))
    owner: Mapped[str] = mapped_column(String(64))
    lease_until: Mapped[datetime] = mapped_column(UtcDateTime)  # renewed by its replica while it runs

    __table_args__ = (Index(None, "key", "lease_until"), Index(None, "ticket"), Index(None, "owner"))


# The tables as Core objects, for the store's bulk statements.
BUILDS = cast(Table, BuildRow.__table__)
BUILD_REQUESTERS = cast(Table, BuildRequesterRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
IMAGES = cast(Table, ImageRow.__table__)
REQUESTS = cast(Table, RequestRow.__table__)
LEASES = cast(Table, LeaseRow.__table__)
PLACES = cast(Table, PlaceRow.__table__)
