"""store/schema.py, the service's view of the tables, agrees with store/models.py (the migrations' source)."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRESQL_RESERVED
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

from binder_service.store.db import Kind
from binder_service.store.models import BUILDS, EVENTS, IMAGES, Base, UtcDateTime
from binder_service.store.records import BuildRecord
from binder_service.store.schema import BUILD_COLUMNS, EVENT_COLUMNS, IMAGE_COLUMNS, KINDS, RESERVED


def test_every_column_that_needs_converting_is_known_by_its_name() -> None:
    for table in Base.metadata.tables.values():
        for column in table.columns:
            if isinstance(column.type, UtcDateTime):
                expected: Kind | None = Kind.DATETIME
            elif isinstance(column.type, JSON):
                expected = Kind.JSON
            elif isinstance(column.type, Boolean):
                expected = Kind.BOOLEAN
            else:
                expected = None
            assert KINDS.get(column.name) is expected, (table.name, column.name)


def test_the_column_lists_are_the_tables() -> None:
    assert tuple(c.name for c in BUILDS.columns) == BUILD_COLUMNS
    assert set(BUILD_COLUMNS) == set(BuildRecord.__slots__)  # a record is a row
    assert tuple(c.name for c in EVENTS.columns) == EVENT_COLUMNS
    assert tuple(c.name for c in IMAGES.columns) == IMAGE_COLUMNS


def test_a_reserved_column_name_is_quoted() -> None:
    reserved = POSTGRESQL_RESERVED | SQLiteIdentifierPreparer.reserved_words
    names = {c.name for table in Base.metadata.tables.values() for c in table.columns}
    assert {n for n in names if n in reserved} == RESERVED
