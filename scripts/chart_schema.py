"""Write chart/values.schema.json: chart/values.schema.yaml with `config` filled in from Settings.

`config` accepts exactly the Settings fields an operator may set, with their types and limits, and rejects
the rest; the fields the chart sets itself (CHART_MANAGED) are left out so they cannot be set twice.
Run after changing Settings or values.schema.yaml; tests/chart fails while the committed file is stale.

    python scripts/chart_schema.py           # write
    python scripts/chart_schema.py --check   # exit 1 if the committed file differs
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

# PyYAML ships no type information; one call is used.
yaml: Any = importlib.import_module("yaml")

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "chart" / "values.schema.yaml"
TARGET = ROOT / "chart" / "values.schema.json"

# Settings the chart derives from its own values (see chart/templates/_helpers-config.tpl and the
# JUPYTERHUB_* environment in the Deployment).
CHART_MANAGED = frozenset(
    {
        "executor",
        "engine",
        "k8s_builder_image",
        "k8s_namespace",
        "k8s_docker_socket",
        "k8s_push_secret",
        "k8s_build_labels",
        "k8s_node_selector",
        "k8s_tolerations",
        "k8s_affinity",
        "k8s_docker_api_selector",
        "host",
        "port",
        "state_dir",
        "docker_host",
        "docker_config",
        "docker_config_dir",
        "service_url",
        "hub_api_url",
        "hub_api_token",
        "hub_service_name",
        "hub_client_id",
        "hub_oauth_callback_url",
        "hub_base_url",
        "hub_host",
    }
)

# JSON-schema keywords kept from pydantic's schema; titles and formats (`path`, `password`) add nothing.
_DROP = frozenset({"title", "format", "writeOnly"})


def _clean(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _clean(v) for k, v in node.items() if k not in _DROP}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return node


def config_schema() -> dict[str, Any]:
    """The schema of the chart's `config`: Settings fields by name, minus the chart-managed ones."""
    sys.path.insert(0, str(ROOT / "src"))
    from binder_service.settings import Settings

    full = Settings.model_json_schema(by_alias=False)
    if "$defs" in full:
        raise SystemExit("Settings' schema has $defs; teach scripts/chart_schema.py to carry them")
    properties = {
        name: _clean(prop) for name, prop in full["properties"].items() if name not in CHART_MANAGED
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "description": "Settings of the service by field name, each set as the environment variable "
        "BINDER_SERVICE_<NAME> (maps and lists as JSON). Generated from binder_service.settings.Settings. "
        f"Set by the chart, not here: {', '.join(sorted(CHART_MANAGED))}.",
        "properties": properties,
    }


def build() -> str:
    schema = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    schema["properties"]["config"] = config_schema()
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if values.schema.json is out of date")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(
                f"{TARGET.relative_to(ROOT)} is out of date: run python scripts/chart_schema.py",
                file=sys.stderr,
            )
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
