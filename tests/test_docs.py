"""The pages say what the code does: every setting a page names exists, a default a page states is the
default, every endpoint is in the API table, every module is on the architecture page, and the
generated reference tables in the repository are current (issue 19)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import AliasChoices
from pydantic_core import PydanticUndefined

import chart_schema
import world
from binder_service.providers.registry import provider_names
from binder_service.settings import NOT_SETTINGS, Settings, parse_duration

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "binder_service"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
PREFIX = "BINDER_SERVICE_"


def _field_by_variable() -> dict[str, str]:
    """Setting field name by every variable that sets it (BINDER_SERVICE_<NAME> and the aliases)."""
    found: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [f"{PREFIX}{name.upper()}"]
        found.update({str(c).upper(): name for c in choices if isinstance(c, str)})
    return found


FIELDS = _field_by_variable()


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _section(page: Path, heading: str) -> str:
    """The text under a heading (`## Name`), up to the next heading of the same or a higher level."""
    text = _text(page)
    start = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
    assert start is not None, f"{page.name} has no heading {heading!r}"
    level = len(start.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.M).search(text, start.end())
    return text[start.end() : end.start() if end else len(text)]


# --- settings -----------------------------------------------------------------------------------------


def test_every_setting_a_page_names_exists() -> None:
    """A variable a page (or a snippet on it) names is a setting: jupyterhub.md's snippet read
    BINDER_SERVICE_HUB_TOKEN, which the service would have ignored."""
    wrong = []
    for page in PAGES:
        text = _text(page)
        for m in re.finditer(rf"\b{PREFIX}[A-Z0-9_]*[A-Z0-9]\b", text):
            if m.group() in FIELDS or m.group() in NOT_SETTINGS:
                continue
            if " ".join(text[m.end() : m.end() + 40].split()).startswith("is not a setting"):
                continue  # configuration.md's example of the warning for a misspelling
            wrong.append(f"{page.name}: {m.group()}")
    assert wrong == []


def test_every_setting_is_described_by_hand() -> None:
    """Each setting is named on some page besides the generated reference (service_url and
    allow_secret_gists were only in the table)."""
    text = "\n".join(_text(page) for page in PAGES)
    described = {field for variable, field in FIELDS.items() if re.search(rf"\b{variable}\b", text)}
    described |= {field for field in Settings.model_fields if f"`{field}`" in text}
    assert set(Settings.model_fields) - described == set()


def _default(field: str) -> Any:
    info = Settings.model_fields[field]
    return info.default_factory() if info.default is PydanticUndefined else info.default  # type: ignore[call-arg, misc]


def _same(stated: str, field: str) -> bool | None:
    """Whether a default as a page writes it (`7d`, 10 s, empty, `http,https`) is the field's; None when the
    text is no literal value (`own namespace`, `: the build timeout plus 5 minutes`)."""
    default = _default(field)
    text = " ".join(stated.split())
    quoted = re.match(r"`([^`<]*)`", text)
    number = re.match(r"(\d+(?:\.\d+)?)\s*(s|seconds?|minutes?|days?)?\b", text)
    if quoted:
        value = quoted.group(1)
    elif number:
        unit = {"minute": 60, "minutes": 60, "day": 86400, "days": 86400}.get(number.group(2) or "", 1)
        value = str(float(number.group(1)) * unit)
    elif re.match(r"\(?empty\b", text):
        return not default
    elif text.startswith(("off", "on")):
        return default is text.startswith("on")
    else:
        return None
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, int | float):
        return float(value) == float(default)
    if isinstance(default, list):
        return re.split(r"[\s,]+", value.strip()) == [str(v) for v in default]
    if field.endswith("_retention") and isinstance(default, str):  # durations: `7d`, 7 days
        return parse_duration(value) == parse_duration(default)
    return value == ("" if default is None else str(default))


def _stated_defaults() -> list[tuple[str, str, str]]:
    """(where, field, stated) for `BINDER_SERVICE_X` (default ...) / (10 s) in prose, and for the
    Default column of tables whose first column is Setting."""
    found = []
    prose = re.compile(rf"`({PREFIX}[A-Z0-9_]+)`\**\s*\((?:default\s+|(?=\d))([^)]*)\)")
    for page in PAGES:
        text = _text(page)
        for m in prose.finditer(text):
            if m.group(1) in FIELDS:
                found.append((f"{page.name}: {m.group(1)}", FIELDS[m.group(1)], m.group(2)))
        for table in re.finditer(r"^\| *Setting *\|(.*)\n\|[-| ]+\|\n((?:\|.*\n)+)", text, re.M):
            header = [cell.strip().lower() for cell in table.group(1).split("|")]
            column = next((i for i, cell in enumerate(header) if "default" in cell), None)
            if column is None:
                continue
            for row in table.group(2).splitlines():
                cells = [cell.strip() for cell in row.strip("|").split("|")]
                names = re.findall(r"`([^`]+)`", cells[0])
                values = re.findall(r"`[^`]*`", cells[column + 1]) if len(names) > 1 else [cells[column + 1]]
                if len(values) != len(names):
                    continue
                for name, value in zip(names, values, strict=True):
                    field = FIELDS.get(name, name if name in Settings.model_fields else None)
                    if field:
                        found.append((f"{page.name}: {name}", field, value))
    return found


STATED = _stated_defaults()


def test_defaults_are_stated_somewhere() -> None:
    """The two parsers below find what they should (a page rewritten into another form drops out)."""
    where = {w.split(": ")[1] for w, _, _ in STATED}
    assert {"BINDER_SERVICE_SEND_TIMEOUT", "BINDER_SERVICE_BUILD_RETENTION", "doi_cache_ttl"} <= where
    assert len(STATED) >= 30


@pytest.mark.parametrize(("where", "field", "stated"), STATED, ids=[w for w, _, _ in STATED])
def test_a_default_a_page_states_is_the_default(where: str, field: str, stated: str) -> None:
    """configuration.md said a client is cut after 60 s: send_timeout is a setting of 30 s."""
    assert _same(stated, field) is not False, f"{where} says {stated!r}; the default is {_default(field)!r}"


def test_the_default_parser_catches_drift() -> None:
    assert _same("60 s", "send_timeout") is False
    assert _same("30 s", "send_timeout") is True
    assert _same("`7d`; units", "build_retention") is True
    assert _same("7 days", "build_retention") is True
    assert _same("`3d`", "build_retention") is False
    assert _same("`http,https,git`", "allowed_git_protocols") is False
    assert _same("own namespace", "k8s_namespace") is None


# --- the API ------------------------------------------------------------------------------------------


def _routes(routes: list[Any]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        if hasattr(route, "original_router"):  # an included router
            found |= _routes(route.original_router.routes)
        else:
            for method in getattr(route, "methods", None) or ():
                if method != "HEAD":
                    path = re.sub(r"\{(\w+)(?::\w+)?\}", r"<\1>", route.path).replace("<build_id>", "<id>")
                    found.add((method, path))
    return found


def test_every_endpoint_is_in_the_api_table() -> None:
    """api.md's table left out /api/v1/images, /login and /oauth_callback."""
    from binder_service.app import create_app

    app = create_app(Settings())
    served = _routes(app.routes) - {("GET", "/docs/oauth2-redirect")}  # Swagger UI's helper page
    table = set()
    for m in re.finditer(r"^\| `(GET|POST|DELETE|PUT|PATCH)` \| (.+?) \|", _text(DOCS / "api.md"), re.M):
        table |= {(m.group(1), path.split("?")[0]) for path in re.findall(r"`([^`]+)`", m.group(2))}
    assert served - table == set(), "endpoints missing from api.md's table"
    assert table - served == set(), "api.md's table names endpoints the service does not serve"


# --- generated tables ---------------------------------------------------------------------------------


def _sphinx_conf() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["settings.md", "errors.md"])
def test_generated_tables_in_the_repository_are_current(name: str) -> None:
    """configuration.md and events.md include these; read in the repository they must be there, and
    current. A docs build (docs/conf.py) rewrites them."""
    conf = _sphinx_conf()
    made = {"settings.md": conf.settings_table, "errors.md": conf.errors_table}[name]()
    committed = DOCS / "_generated" / name
    assert committed.is_file(), f"docs/_generated/{name} is not in the repository"
    assert committed.read_text(encoding="utf-8") == made, (
        f"docs/_generated/{name} is stale: build the docs (sphinx-build docs ...) and commit it"
    )


@pytest.mark.parametrize(("page", "name"), [("configuration.md", "settings.md"), ("events.md", "errors.md")])
def test_pages_link_their_generated_table_for_readers_of_the_repository(page: str, name: str) -> None:
    text = _text(DOCS / page)
    assert f"```{{include}} _generated/{name}" in text
    assert f"](_generated/{name})" in text  # a link GitHub shows; a MyST comment, so Sphinx does not


# --- what a page says of the code ---------------------------------------------------------------------


def _architecture_names() -> set[str]:
    """Modules the architecture page's table of where things live names: `dir/x.py` tokens, and bare
    `y.py` tokens after one in the same cell (`providers/git/smart_http.py`, `daemon.py`), which are in
    that directory when such a module exists, else at the top."""
    names: set[str] = set()
    for row in _section(DOCS / "architecture.md", "Where things live").splitlines():
        if not row.startswith("|"):
            continue
        for cell in row.strip("|").split("|")[1:]:
            base = ""
            for token in re.findall(r"`([\w/.]+\.py)`", cell):
                if "/" in token:
                    base = token.rsplit("/", 1)[0] + "/"
                    names.add(token)
                else:
                    names.add(base + token if base and (SRC / (base + token)).is_file() else token)
    return names


def test_the_architecture_page_names_every_module() -> None:
    """It missed api/images.py, image_admin.py, builds/replicas.py, builds/workdirs.py, store/leases.py,
    store/places.py, ...: a new module without a row fails here."""
    modules = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "__init__.py" and "migrations/versions" not in path.as_posix()  # one per migration
    }
    assert modules - _architecture_names() == set()


def test_the_architecture_page_names_every_module_of_the_client() -> None:
    """src/ also holds the event-stream client's distribution: its row names each of its modules."""
    client = ROOT / "src" / "client" / "binder_service_client"
    rows = [
        row
        for row in _section(DOCS / "architecture.md", "Where things live").splitlines()
        if row.startswith("|") and "`src/client/binder_service_client/`" in row
    ]
    named = set(re.findall(r"`(\w+\.py)`", " ".join(rows)))
    assert {p.name for p in client.glob("*.py") if p.name != "__init__.py"} - named == set()


def test_the_chart_page_names_every_setting_the_chart_sets() -> None:
    """chart.md's list of what `config` rejects missed docker_host, docker_config_dir and service_url."""
    text = _section(DOCS / "chart.md", "Values")
    missing = {
        name
        for name in chart_schema.CHART_MANAGED
        if f"`{name}`" not in text
        and name
        not in (
            # named together as "the `hub_*` settings"
            {n for n in chart_schema.CHART_MANAGED if n.startswith("hub_")} if "`hub_*`" in text else set()
        )
    }
    assert missing == set()


def test_the_providers_page_gives_the_default_order() -> None:
    """providers.md said "in the order below" over a table that lists git fourth."""
    text = " ".join(_text(DOCS / "providers.md").split())
    m = re.search(r"in this order: ((?:`\w+`, )+`\w+`)", text)
    assert m is not None
    assert tuple(re.findall(r"`(\w+)`", m.group(1))) == provider_names()


def test_the_demo_settings_are_on_the_getting_started_page() -> None:
    """Reproducing the demo by hand takes every setting demo.sh gives `serve` (ALLOW_PRIVATE_NETWORKS was
    missing), and the engine `scripts/world.py up` points DOCKER_HOST at."""
    demo = (ROOT / "scripts" / "demo.sh").read_text(encoding="utf-8")
    given = set(re.findall(rf"\b({PREFIX}[A-Z_]+)=", demo))
    assert given >= {"BINDER_SERVICE_REGISTRY_URL", "BINDER_SERVICE_ALLOW_PRIVATE_NETWORKS"}
    page = DOCS / "getting-started.md"
    for section in ("`scripts/demo.sh`", "Running it yourself"):
        text = _section(page, section)
        assert {name for name in given if name not in text} == set(), section
    for text in (_section(page, "Running it yourself"), _text(ROOT / "README.md")):
        assert f"DOCKER_HOST={world.DOCKER_HOST}" in text
        assert "scripts/world.py up" in text
        assert ".venv/bin/binder-service" in text
