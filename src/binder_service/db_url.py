"""Database URLs as operators write them, mapped to what the build store opens.

JupyterHub's `db_url`, Helm charts and managed databases hand out `sqlite:///path`, `postgresql://…` and
`postgres://…`, often with libpq options such as `?sslmode=require`. The store opens SQLite with the
standard library (store/db/sqlite.py) and PostgreSQL with asyncpg. A SQLite URL keeps its path
(SQLAlchemy's rules: `sqlite:///relative`, `sqlite:////absolute`, `sqlite://` in memory). A libpq URL (any
`postgresql` form but SQLAlchemy's `postgresql+asyncpg://`) is handed to asyncpg whole, which reads it as
libpq does (`sslmode`, `sslrootcert`, several hosts, …); in a `postgresql+asyncpg://` URL each query
option is passed to asyncpg by name, as SQLAlchemy did, so libpq's `sslmode` becomes asyncpg's `ssl`
(same values). Anything else is refused in one line that names the accepted forms (and the extra a
missing driver comes with), never the password.

Light on purpose: settings validation imports it.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["ACCEPTED", "StoreURL", "safe_url", "store_url"]

ACCEPTED = (
    "sqlite:///PATH (relative) or sqlite:////ABSOLUTE/PATH, "
    "postgresql://USER:PASSWORD@HOST[:PORT]/DB or postgres://… (libpq options such as ?sslmode=require)"
)
# The drivers SQLAlchemy names in a URL: which library to use, not how to connect. The store opens SQLite
# with the standard library, and PostgreSQL with asyncpg (their options are libpq's, which asyncpg reads).
_SQLITE_DRIVERS = {"", "aiosqlite", "pysqlite"}
_POSTGRES_DRIVERS = {"", "psycopg2", "psycopg", "psycopg_async", "psycopg2cffi", "pg8000", "asyncpg"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+._-]{0,39}")  # shown in a message only when it is one
_EXTRA = {"asyncpg": "pip install 'binder-service[postgres]'"}
# user:password@ as SQLAlchemy's make_url reads it (a password runs to the first "@" after it)
_PASSWORD = re.compile(r"(?P<head>[^:/?#]+://[^:/@?#]*:)[^@]*@")
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)[^&#]*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class StoreURL:
    """What the store opens: a SQLite file's `path` (`:memory:`), or asyncpg's `connect` arguments
    (`dsn`: a libpq URL asyncpg reads itself, and options by name; they hold the password)."""

    backend: Literal["sqlite", "postgresql"]
    path: str = ""
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
        return _sqlite(rest)
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


def safe_url(url: str) -> str:
    """The URL without its password (in its user part or a `password=` option), for messages and logs."""
    url = url.strip()
    if "://" not in url:
        return "<unparsable database URL>"  # it may still hold a secret
    url = _PASSWORD.sub(r"\g<head>***@", url, count=1)
    return _QUERY_PASSWORD.sub(r"\g<head>***", url)


def _sqlite(rest: str) -> StoreURL:
    """`sqlite://[host]/PATH`: PATH relative to the working directory unless it starts with "/"; none
    (`sqlite://`) or `:memory:` is a database in memory."""
    rest, _, query = rest.partition("?")
    if query:
        raise ValueError(f"a SQLite URL takes no ?options (accepted: {ACCEPTED})")
    _host, _, path = rest.partition("/")
    return StoreURL("sqlite", path or ":memory:")


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
        return StoreURL("postgresql", connect={"dsn": urlunsplit(parts)})  # asyncpg reads it as libpq
    options = {("ssl" if key == "sslmode" else key): value for key, value in query}
    return StoreURL("postgresql", connect={"dsn": urlunsplit(parts._replace(query="")), **options})
