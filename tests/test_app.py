"""The composition root: create_app wires parts made elsewhere, and refuses what Settings refuse."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError

from binder_service.app import create_app
from binder_service.builds.executors import engine_check_name, make_executor
from binder_service.builds.local import LocalExecutor
from binder_service.providers.base import RepoProvider
from binder_service.providers.registry import PROVIDERS, make_providers, provider_names
from binder_service.settings import Settings
from tests.support.fake_k8s import write_kubeconfig

SRC = Path(__file__).resolve().parents[1] / "src" / "binder_service"
# Config flows one way (STYLE.md): env -> Settings (cli.py or a test) -> create_app -> app.state.
READS_ENVIRONMENT = re.compile(r"\bos\.environ\b|\bgetenv\b|\bfrom os import\b[^\n]*\benviron\b")
MAY_READ_ENVIRONMENT = {SRC / "cli.py", *(SRC / "settings").rglob("*.py")} | {
    # repo2docker's engine plugin runs in repo2docker's process (with the environment the service gave
    # it), never in the service's.
    *(SRC / "engines").rglob("*.py")
}


def test_only_cli_and_settings_read_the_environment() -> None:
    readers = sorted(
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        if path not in MAY_READ_ENVIRONMENT
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if READS_ENVIRONMENT.search(line)
    )
    assert readers == []


@pytest.mark.parametrize(
    ("insecure", "message"),
    [
        ({"host": "0.0.0.0"}, "refusing to listen on 0.0.0.0 without authentication"),
        ({"host": "::"}, "refusing to listen on :: without authentication"),
        ({"image_prefix": "Bad Prefix"}, "image prefix 'Bad Prefix' does not form valid image names"),
        (
            {"docker_config": "/nonexistent/config.json"},
            "docker config /nonexistent/config.json does not exist",
        ),
        ({"executor": "kubernetes"}, "executor 'kubernetes' needs registry_url"),
    ],
)
def test_create_app_cannot_be_given_insecure_settings(insecure: dict[str, object], message: str) -> None:
    """The safety rules are Settings' model validators: no caller (CLI, test, embedding) gets past them."""
    with pytest.raises(ValidationError, match=re.escape(message)):
        create_app(Settings(**insecure))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "secure",
    [
        {"host": "0.0.0.0", "api_tokens": [SecretStr("t0ken")]},
        {"host": "0.0.0.0", "hub_api_url": "http://127.0.0.1:8081/hub/api", "hub_api_token": "x"},
        {"host": "localhost"},
        {"host": "127.0.0.2"},
        {"host": "::1"},
    ],
)
def test_listening_beyond_loopback_needs_authentication(secure: dict[str, object], tmp_path: Path) -> None:
    app = create_app(Settings(state_dir=tmp_path, **secure))  # type: ignore[arg-type]
    assert isinstance(app, FastAPI)


def test_the_provider_names_are_the_registry_s() -> None:
    names = provider_names()
    assert names == tuple(p.name for p in PROVIDERS)
    assert len(set(names)) == len(names)
    assert Settings().providers == list(names)  # everything, in the registry's detection order
    assert names[-1] == "git"  # the catch-all is tried last
    for provider in PROVIDERS:  # each makes itself: nothing is left to the base class's refusal
        assert provider.from_settings is not RepoProvider.from_settings, provider.name
    with pytest.raises(ValidationError, match=r"unknown providers: \['nope'\] \(known: gh, gl, gist"):
        Settings(providers=["gh", "nope"])


async def test_every_provider_is_made_from_settings_in_the_order_asked() -> None:
    settings = Settings(providers=["git", "ckan", "gist", "gh"])
    async with httpx.AsyncClient() as http:
        made = make_providers(settings, http)
        assert [p.name for p in made] == ["git", "ckan", "gist", "gh"]
        everything = make_providers(Settings(), http)
        assert [p.name for p in everything] == list(provider_names())


async def test_the_executor_is_chosen_from_settings_with_the_environment_given(tmp_path: Path) -> None:
    local = await make_executor(Settings(state_dir=tmp_path), environ={"PATH": "/usr/bin:/bin"})
    try:
        assert isinstance(local, LocalExecutor)
    finally:
        await local.aclose()
    assert engine_check_name(Settings()) == "Docker engine"
    pytest.importorskip("kubernetes_asyncio")
    from binder_service.builds.kubernetes.executor import KubernetesExecutor

    settings = Settings(executor="kubernetes", registry_url="http://127.0.0.1:5055", k8s_namespace="ns")
    # The cluster comes from the environment passed in (never this process's): a kubeconfig there.
    kubeconfig = write_kubeconfig("http://127.0.0.1:9", tmp_path / "kubeconfig")
    kube = await make_executor(settings, environ={"KUBECONFIG": str(kubeconfig)})
    try:
        assert isinstance(kube, KubernetesExecutor)
        assert kube.namespace == "ns"
    finally:
        await kube.aclose()
    assert engine_check_name(settings) == "Kubernetes API"


def test_settings_keep_the_environment_they_were_read_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BS_TEST_MARK", "one")
    settings = Settings()
    monkeypatch.setenv("BS_TEST_MARK", "two")
    assert settings.environ["BS_TEST_MARK"] == "one"
    assert settings.model_copy(update={"port": 1}).environ["BS_TEST_MARK"] == "one"
