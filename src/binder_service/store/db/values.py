"""Values in and out, exactly as SQLAlchemy's types stored them (store/models.py, the migrations).

| Python              | SQLite                                        | PostgreSQL                  |
| ------------------- | --------------------------------------------- | --------------------------- |
| aware datetime      | TEXT 'YYYY-MM-DD HH:MM:SS.ffffff', naive UTC   | timestamp with time zone    |
| `Json(value)`       | TEXT, `json.dumps(value)`                     | json, `json.dumps(value)`   |
| bool                | INTEGER 0 / 1                                 | boolean                     |

A bound datetime is always given in that form, so SQLite compares it with stored ones as text (a naive
one is taken as UTC, as `UtcDateTime` did). Result columns are read back by name: the store's schema
(store/schema.py) says which column holds which kind, and every datetime comes back aware, in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any


class Kind(Enum):
    """A column type the drivers do not give back as the store uses it."""

    DATETIME = "datetime"
    JSON = "json"
    BOOLEAN = "boolean"


class Json:
    """A value for a JSON column (a list or dict param would otherwise be expanded, or refused)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Json({self.value!r})"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def sqlite_datetime(value: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format, of the time in UTC."""
    v = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def to_sqlite(value: Any) -> Any:
    if isinstance(value, datetime):
        return sqlite_datetime(value)
    if isinstance(value, Json):
        return json.dumps(value.value)
    return value  # a bool is an int to sqlite3: 0 or 1


def to_postgres(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, Json):
        return json.dumps(value.value)  # asyncpg takes json as text
    return value


def _from_sqlite_datetime(value: Any) -> datetime:
    return _utc(datetime.fromisoformat(value))  # what SQLAlchemy parses it with


def _from_postgres_datetime(value: Any) -> datetime:
    assert isinstance(value, datetime)
    return _utc(value)


FROM_SQLITE: Mapping[Kind, Callable[[Any], Any]] = {
    Kind.DATETIME: _from_sqlite_datetime,
    Kind.JSON: json.loads,
    Kind.BOOLEAN: bool,
}
FROM_POSTGRES: Mapping[Kind, Callable[[Any], Any]] = {
    Kind.DATETIME: _from_postgres_datetime,
    Kind.JSON: json.loads,  # asyncpg gives json as text
}

Decoders = tuple[tuple[str, Callable[[Any], Any]], ...]


def decoders(
    names: Sequence[str], kinds: Mapping[str, Kind], table: Mapping[Kind, Callable[[Any], Any]]
) -> Decoders:
    """What to apply to which result column (by name)."""
    return tuple((n, table[kinds[n]]) for n in names if n in kinds and kinds[n] in table)


def decode(rows: list[dict[str, Any]], plan: Decoders) -> list[dict[str, Any]]:
    for name, convert in plan:
        for row in rows:
            value = row[name]
            if value is not None:
                row[name] = convert(value)
    return rows
