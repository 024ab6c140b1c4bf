"""Database URLs as operators write them (db_url.py): each form against real SQLite and PostgreSQL, and
the refusals, which name the accepted forms and never the password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from binder_service.db_url import StoreURL, safe_url, store_url
from binder_service.settings import Settings, describe_invalid
from binder_service.store import BuildStore, StoreOpenError
from tests.support.postgres import Cluster
from tests.support.records import record

SECRET = "pw-Secret-93"  # a password no message may show


@pytest.mark.parametrize(
    ("given", "path", "connect"),
    [
        ("sqlite:///state/b.sqlite", "state/b.sqlite", {}),
        ("sqlite:////var/lib/b.sqlite", "/var/lib/b.sqlite", {}),
        ("sqlite+pysqlite:////b.sqlite", "/b.sqlite", {}),
        ("sqlite+aiosqlite:////b.sqlite", "/b.sqlite", {}),  # the form earlier releases wrote
        ("sqlite://", ":memory:", {}),
        ("sqlite:///:memory:", ":memory:", {}),
        ("postgresql://u:p@h/db", "", {"dsn": "postgresql://u:p@h/db"}),
        ("postgres://u:p@h:5433/db", "", {"dsn": "postgresql://u:p@h:5433/db"}),
        (
            "postgresql+psycopg2://u@h/db?sslmode=require&sslrootcert=/ca.pem",
            "",
            {"dsn": "postgresql://u@h/db?sslmode=require&sslrootcert=/ca.pem"},
        ),
        ("postgresql+asyncpg://u:p@h/db", "", {"dsn": "postgresql://u:p@h/db"}),
        # SQLAlchemy's form passes each option to asyncpg by name: libpq's sslmode is asyncpg's ssl.
        ("postgresql+asyncpg://u@h/db?sslmode=require", "", {"dsn": "postgresql://u@h/db", "ssl": "require"}),
    ],
)
def test_each_form_maps_to_what_the_store_opens(given: str, path: str, connect: dict[str, str]) -> None:
    target = store_url(given)
    assert (target.backend, target.path, target.connect) == (
        "sqlite" if given.startswith("sqlite") else "postgresql",
        path,
        connect,
    )
    assert "p@" not in repr(target)  # a StoreURL never shows what it connects with


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        (f"postgresql+asyncpg://u:{SECRET}@h/db", "postgresql+asyncpg://u:***@h/db"),
        (f"postgres://u:{SECRET}@h:5433/db?sslmode=require", "postgres://u:***@h:5433/db?sslmode=require"),
        (f"postgresql://u@h/db?password={SECRET}&x=1", "postgresql://u@h/db?password=***&x=1"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:////var/lib/b.sqlite", "sqlite:////var/lib/b.sqlite"),
        (f"u:{SECRET}@h/db", "<unparsable database URL>"),
    ],
)
def test_safe_url_hides_the_password(given: str, shown: str) -> None:
    assert safe_url(given) == shown


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (
            f"mysql://u:{SECRET}@127.0.0.1/db",
            "BINDER_SERVICE_DB_URL: mysql:// is not supported (accepted: sqlite:///PATH",
        ),
        (f"oracle+cx_oracle://u:{SECRET}@h/db", "oracle+cx_oracle:// is not supported"),
        (f"postgresql+unknown://u:{SECRET}@h/db", "postgresql+unknown:// is not supported"),
        (f"u:{SECRET}@127.0.0.1/db", "is not a URL (accepted: sqlite:///PATH"),
        (f"postgres://u:{SECRET}@h:port/db", "cannot be read: check its port"),
        (f"postgres://u:{SECRET}@h/db?sslmode=sometimes", "sslmode must be one of: allow, disable"),
    ],
)
def test_a_url_the_store_cannot_use_is_refused_in_one_line_at_settings(
    given: str, says: str, tmp_path: Path
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(db_url=given, state_dir=tmp_path)
    shown = describe_invalid(caught.value)
    assert shown.startswith("invalid configuration: BINDER_SERVICE_DB_URL: ")
    assert says in shown
    assert "\n" not in shown
    assert SECRET not in shown


def test_a_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # as if the `postgres` extra were not installed
    with pytest.raises(ValidationError) as caught:
        Settings(db_url=f"postgres://u:{SECRET}@127.0.0.1/db", state_dir=tmp_path)
    shown = describe_invalid(caught.value)
    assert shown == (
        "invalid configuration: BINDER_SERVICE_DB_URL: a PostgreSQL database needs the asyncpg driver, "
        "which is not installed: pip install 'binder-service[postgres]'"
    )
    with pytest.raises(ValueError, match=r"binder-service\[postgres\]"):
        store_url("postgresql+asyncpg://u@h/db")
    Settings(db_url="sqlite:///b.sqlite", state_dir=tmp_path)  # SQLite does not need it


def _serve(env: dict[str, str], *code: str) -> subprocess.CompletedProcess[str]:
    program = (
        "import sys\n" + "\n".join(code) + "\nfrom binder_service.cli import main\nsys.exit(main(['serve']))"
    )
    return subprocess.run(
        [sys.executable, "-c", program],
        env={**os.environ, **env, "PYTHONMALLOC": "malloc"},  # no re-exec for the allocator
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_an_unknown_scheme_or_a_missing_driver_with_exit_2(tmp_path: Path) -> None:
    env = {"BINDER_SERVICE_STATE_DIR": str(tmp_path), "BINDER_SERVICE_PORT": "0"}
    unknown = _serve({**env, "BINDER_SERVICE_DB_URL": f"mysql://u:{SECRET}@127.0.0.1/db"})
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.startswith("binder-service: invalid configuration: BINDER_SERVICE_DB_URL: mysql://")
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert SECRET not in unknown.stderr
    missing = _serve(
        {**env, "BINDER_SERVICE_DB_URL": f"postgres://u:{SECRET}@127.0.0.1/db"},
        "sys.modules['asyncpg'] = None",
    )
    assert missing.returncode == 2, missing.stderr
    assert "pip install 'binder-service[postgres]'" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert SECRET not in missing.stderr


async def _round_trip(url: str) -> None:
    """The store opens (migrating), writes a build and reads it back."""
    store = await BuildStore.open(url, op_timeout=10.0)
    try:
        store.save_build(record("b1"))
        await store.flush()
        found = await store.get_build("b1")
        assert found is not None
        assert found.image == record("b1").image
        assert SECRET not in store.url
    finally:
        await store.aclose()


async def test_sqlite_relative_and_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    await _round_trip("sqlite:///rel/store.sqlite")  # JupyterHub's form: relative to the working directory
    assert (tmp_path / "rel" / "store.sqlite").is_file()
    absolute = tmp_path / "abs" / "store.sqlite"
    await _round_trip(f"sqlite:///{absolute}")  # an absolute path: four slashes
    assert str(absolute).startswith("/")
    assert absolute.is_file()
    await _round_trip(f"sqlite+pysqlite:///{tmp_path / 'sync.sqlite'}")


def _as(url: str, scheme: str, query: str = "", password: str = "") -> str:
    """The session cluster's database URL (postgresql+asyncpg://postgres@…) written another way."""
    rest = url.split("://", 1)[1]
    if password:
        rest = rest.replace("postgres@", f"postgres:{password}@", 1)
    return f"{scheme}://{rest}{query}"


@pytest.mark.parametrize(
    ("scheme", "query"),
    [
        ("postgresql", ""),
        ("postgres", ""),
        ("postgresql+psycopg2", ""),
        ("postgresql", "?sslmode=disable"),
        ("postgres", "?sslmode=prefer&application_name=binder-service"),
        ("postgresql+asyncpg", "?sslmode=disable"),
    ],
)
async def test_postgresql_forms_open_a_real_database(pg: Cluster, scheme: str, query: str) -> None:
    # The cluster trusts loopback: a password is accepted and ignored.
    await _round_trip(_as(pg.create_database(), scheme, query, password=SECRET))


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+asyncpg"])
async def test_sslmode_is_honoured_and_the_error_hides_the_password(pg: Cluster, scheme: str) -> None:
    # The session's cluster has no TLS: `require` must fail, as libpq would, saying why.
    url = _as(pg.create_database(), scheme, "?sslmode=require", password=SECRET)
    with pytest.raises(StoreOpenError) as caught:
        await BuildStore.open(url, op_timeout=10.0)
    message = str(caught.value)
    assert "rejected SSL upgrade" in message, message  # asyncpg was asked for TLS
    assert SECRET not in message
    assert "postgres:***@" in message


def test_store_url_is_a_value_without_secrets_in_its_repr() -> None:
    target = StoreURL("postgresql", connect={"dsn": f"postgresql://u:{SECRET}@h/db"})
    assert SECRET not in repr(target)
    assert SECRET not in str(target)
