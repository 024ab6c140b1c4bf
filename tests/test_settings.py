from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from binder_service.settings import Settings, describe_invalid, setting_variables, unknown_variables
from binder_service.settings.builds import Amounts


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINDER_SERVICE_REGISTRY_URL", "http://127.0.0.1:5055/")
    monkeypatch.setenv("BINDER_SERVICE_IMAGE_PREFIX", "demo/")
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/x.sock")
    monkeypatch.setenv("BINDER_SERVICE_API_TOKENS", "a, b")
    monkeypatch.setenv("BINDER_SERVICE_REPO2DOCKER_EXTRA_ARGS", '["--cache-from", "x"]')
    monkeypatch.setenv("BINDER_SERVICE_BASE_URL", "services/binder")
    s = Settings()
    assert s.registry_url == "http://127.0.0.1:5055"
    assert s.image_prefix == "demo/"
    assert s.docker_host == "unix:///tmp/x.sock"
    assert [t.get_secret_value() for t in s.api_tokens] == ["a", "b"]
    assert s.repo2docker_extra_args == ["--cache-from", "x"]
    assert s.base_url == "/services/binder/"
    assert "a" not in repr(s.api_tokens)


def test_safe_defaults() -> None:
    s = Settings()
    assert s.registry_url == ""
    assert s.host == "127.0.0.1"
    assert s.allow_local_repos is False
    assert s.allowed_git_protocols == ["http", "https", "git", "ssh"]


@pytest.mark.parametrize(
    "bad",
    [{"registry_url": "127.0.0.1:5055"}, {"allowed_git_protocols": "ext"}, {"max_concurrent_builds": 0}],
)
def test_unsafe_or_invalid_values_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**bad)  # type: ignore[arg-type]


def test_kubernetes_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINDER_SERVICE_EXECUTOR", "kubernetes")
    monkeypatch.setenv("BINDER_SERVICE_REGISTRY_URL", "https://registry.example.org")
    monkeypatch.setenv("BINDER_SERVICE_K8S_NODE_SELECTOR", '{"binder/docker-api": "true"}')
    monkeypatch.setenv("BINDER_SERVICE_K8S_TOLERATIONS", '[{"key": "binder", "operator": "Exists"}]')
    monkeypatch.setenv("BINDER_SERVICE_K8S_BUILD_RESOURCES", '{"limits": {"memory": "4Gi"}}')
    monkeypatch.setenv("BINDER_SERVICE_K8S_BUILD_LABELS", '{"app.kubernetes.io/instance": "r"}')
    s = Settings()
    assert s.executor == "kubernetes"
    assert s.k8s_node_selector == {"binder/docker-api": "true"}
    assert s.k8s_tolerations == [{"key": "binder", "operator": "Exists"}]
    assert s.k8s_build_resources == {"limits": {"memory": "4Gi"}}
    assert s.k8s_build_labels == {"app.kubernetes.io/instance": "r"}
    assert s.k8s_build_image.startswith("quay.io/jupyterhub/repo2docker:")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"executor": "kubernetes"}, "executor 'kubernetes' needs registry_url"),
        ({"k8s_sticky_builds": True}, "k8s_sticky_builds needs k8s_docker_api_selector"),
        ({"executor": "pods"}, "executor"),
    ],
)
def test_kubernetes_settings_are_checked(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**bad)  # type: ignore[arg-type]


def test_a_refusal_is_one_line_and_a_rule_across_fields_shows_no_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """How `binder-service serve` words a bad configuration: a rule across settings is checked with the
    whole input in hand, and pydantic's message would show (a truncated repr of) it, secrets and all."""
    with pytest.raises(ValidationError) as refused:
        Settings(host="0.0.0.0")
    assert describe_invalid(refused.value) == (
        "refusing to listen on 0.0.0.0 without authentication; set BINDER_SERVICE_API_TOKENS, "
        "run it as a JupyterHub service, or listen on 127.0.0.1"
    )
    monkeypatch.setenv("BINDER_SERVICE_GITHUB_TOKEN", "ghp_s3cret")
    with pytest.raises(ValidationError) as bad:
        Settings(image_prefix="Bad/", gitlab_token="glpat_s3cret")
    shown = describe_invalid(bad.value)
    assert shown.startswith("invalid configuration: image prefix 'Bad/' does not form valid image names")
    assert "s3cret" not in shown
    with pytest.raises(ValidationError) as field:
        Settings(max_concurrent_builds=0)
    assert describe_invalid(field.value).startswith("invalid configuration:\n1 validation error")
    assert "max_concurrent_builds" in describe_invalid(field.value)


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        # jupyterhub.md's snippet read this one: the service would have ignored it silently.
        ("BINDER_SERVICE_HUB_TOKEN", "did you mean BINDER_SERVICE_HUB_API_TOKEN?"),
        ("BINDER_SERVICE_API_TOKEN", "did you mean BINDER_SERVICE_API_TOKENS?"),
        ("BINDER_SERVICE_MAX_CONCURENT_BUILDS", "did you mean BINDER_SERVICE_MAX_CONCURRENT_BUILDS?"),
        ("binder_service_statedir", "did you mean BINDER_SERVICE_STATE_DIR?"),
        ("BINDER_SERVICE_XYZZY", "no setting has a name like it"),
    ],
)
def test_unknown_variables_are_named_with_the_closest_setting(variable: str, hint: str) -> None:
    assert unknown_variables({variable: "x"}) == [f"{variable} is not a setting and is ignored; {hint}"]


def test_real_settings_and_other_variables_pass_quietly() -> None:
    environ = {name: "x" for name in setting_variables()}
    environ.update(
        {
            "binder_service_registry_url": "x",  # names are not case-sensitive
            "BINDER_SERVICE_TOKEN": "t",  # `binder-service build`'s token, no setting
            "DOCKER_HOST": "unix:///x",
            "JUPYTERHUB_API_TOKEN": "t",
            "PATH": "/usr/bin",
        }
    )
    assert unknown_variables(environ) == []
    # Every field is there, by its own name or its BINDER_SERVICE_ alias.
    assert "BINDER_SERVICE_HUB_API_TOKEN" in environ
    assert len(set(setting_variables())) >= len(Settings.model_fields)


def test_settings_depend_on_leaves_only() -> None:
    """No import circle through the settings: building them imports no provider (nor httpx with them)."""
    code = (
        "import sys\n"
        "from binder_service.settings import Settings\n"
        "Settings(providers=['gh', 'git'], spec_config=[{'pattern': '^gh/', 'quota': 1}],\n"
        "         allowed_networks=['10.1.0.0/16'], engine_disk_budget='2GiB')\n"
        "names = ('binder_service.providers', 'httpx')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(names))\n"
        "print(loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_sizes_and_durations_are_numbers_once_loaded() -> None:
    """The fields keep what the operator wrote (the chart schema and the docs show it); `amounts` has the
    numbers, converted when the settings load."""
    s = Settings(
        build_retention="2d", registry_retention="30d", engine_disk_budget="2GiB", build_memory_limit="512MiB"
    )
    assert (s.build_retention, s.engine_disk_budget) == ("2d", "2GiB")
    assert s.amounts == Amounts(
        build_retention_seconds=2 * 86400,
        registry_retention_seconds=30 * 86400,
        engine_disk_budget_bytes=2 * 2**30,
        build_memory_limit_bytes=512 * 2**20,
    )
    off = Settings(build_retention="0", registry_retention="", engine_disk_budget="")
    assert off.amounts == Amounts(0.0, None, None, None)
