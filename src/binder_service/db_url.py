"""Database URLs as operators write them, mapped to the async drivers the build store runs on.

JupyterHub's `db_url`, Helm charts and managed databases hand out `sqlite:///path`, `postgresql://…` and
`postgres://…`, often with libpq options such as `?sslmode=require`. The store speaks only asyncio:
SQLite through aiosqlite, PostgreSQL through asyncpg. A SQLite URL keeps its path (SQLAlchemy's rules:
`sqlite:///relative`, `sqlite:////absolute`). A libpq URL (any `postgresql` form but SQLAlchemy's own
`postgresql+asyncpg://`) is handed to asyncpg whole, which reads it as libpq does (`sslmode`,
`sslrootcert`, several hosts, …); in a `postgresql+asyncpg://` URL, SQLAlchemy passes each query option to
asyncpg by name, so libpq's `sslmode` becomes asyncpg's `ssl` (same values). Anything else is refused in
one line that names the accepted forms (and the extra a missing driver comes with), never the password.

Light on purpose: settings validation imports it, before SQLAlchemy is loaded.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["ACCEPTED", "StoreURL", "store_url"]

ACCEPTED = (
    "sqlite:///PATH (relative) or sqlite:////ABSOLUTE/PATH, "
    "postgresql://USER:PASSWORD@HOST[:PORT]/DB or postgres://… (libpq options such as ?sslmode=require)"
)
_SQLITE_DRIVERS = {"", "aiosqlite", "pysqlite"}
# SQLAlchemy's sync PostgreSQL drivers: the URL says which library to use, not how to connect; the store
# is async, so they all mean asyncpg here (their options are libpq's, which asyncpg reads).
_POSTGRES_DRIVERS = {"", "psycopg2", "psycopg", "psycopg_async", "psycopg2cffi", "pg8000", "asyncpg"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._-]{0,39}")  # shown in a message only when it is one
_EXTRA = {"aiosqlite": "pip install binder-service", "asyncpg": "pip install 'binder-service[postgres]'"}


@dataclass(frozen=True, slots=True)
class StoreURL:
    """What the store's engine opens: `url` for SQLAlchemy, and keyword arguments for the driver's
    `connect` (`dsn`: a libpq URL asyncpg reads itself; it holds the password)."""

    backend: Literal["sqlite", "postgresql"]
    url: str
    connect: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the password, wherever this ends up
        return f"StoreURL(backend={self.backend!r})"


def store_url(url: str) -> StoreURL:
    """`url` (BINDER_SERVICE_DB_URL) as the store opens it; ValueError in one line, without the password,
    for a scheme, driver or option the store cannot use."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep:
        raise ValueError(f"the database URL is not a URL (accepted: {ACCEPTED})")
    dialect, _, driver = scheme.lower().partition("+")
    if dialect == "sqlite" and driver in _SQLITE_DRIVERS:
        _need("aiosqlite", "SQLite")
        return StoreURL("sqlite", f"sqlite+aiosqlite://{rest}")
    if dialect in ("postgresql", "postgres") and driver in _POSTGRES_DRIVERS:
        _need("asyncpg", "PostgreSQL")
        return _postgres(rest, sqlalchemy_form=driver == "asyncpg")
    shown = f"{scheme}://" if _SCHEME.fullmatch(scheme) else "its scheme"
    raise ValueError(f"{shown} is not supported (accepted: {ACCEPTED})")


def _need(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ValueError(
            f"a {what} database needs the {module} driver, which is not installed: {_EXTRA[module]}"
        )


def _postgres(rest: str, *, sqlalchemy_form: bool) -> StoreURL:
    try:
        parts = urlsplit(f"postgresql://{rest}")
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError(
            f"the PostgreSQL URL cannot be read: check its port and ?options (accepted: {ACCEPTED})"
        ) from None
    for key, value in query:
        if key == "sslmode" and value not in _SSL_MODES:
            raise ValueError(f"the database URL's sslmode must be one of: {', '.join(sorted(_SSL_MODES))}")
    if not sqlalchemy_form:
        # asyncpg reads the libpq URL itself; SQLAlchemy is told only which dialect it talks to.
        return StoreURL("postgresql", "postgresql+asyncpg://", {"dsn": urlunsplit(parts)})
    renamed = urlencode([("ssl" if key == "sslmode" else key, value) for key, value in query])
    return StoreURL("postgresql", urlunsplit(parts._replace(scheme="postgresql+asyncpg", query=renamed)))
