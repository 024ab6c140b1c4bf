"""What repo2docker is told for a dataset: the content provider, its config, and a URL its provider reads.

Building a dataset for real needs the real hosts (repo2docker downloads the files itself), which cannot
be reached here. So this checks the command line and config file the executor would run, and that
repo2docker's own content provider accepts the repository URL our providers produce - offline, with
repo2docker's `detect` for the providers whose detection needs no network.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config

from binder_service.builds.executor import BuildJob
from binder_service.builds.local import LocalExecutor
from binder_service.providers import ResolvedRepo

# repo2docker imports a logging module that warns about its own new name.
pytestmark = pytest.mark.filterwarnings(
    "ignore:pythonjsonlogger.jsonlogger has been moved:DeprecationWarning"
)

# The repository URL each provider hands to repo2docker, in the form its resolve() builds it.
CASES = {
    "zenodo": ("Zenodo", "https://zenodo.org/record/3242074", "3242074"),
    "figshare": ("Figshare", "https://figshare.com/articles/_/9782777/2", "v2"),
    "hydroshare": (
        "Hydroshare",
        "https://www.hydroshare.org/resource/b8f6eae9d89241cf8b5904033460af61",
        "v1569427724",
    ),
    "dataverse": (
        "Dataverse",
        "https://dataverse.harvard.edu/dataset.xhtml?persistentId=doi:10.7910/DVN/TJCLKP",
        "v3.1",
    ),
    "ckan": ("CKAN", "https://demo.ckan.org/dataset/sample-dataset-1", "v1677077371"),
}


def executor(tmp_path: Path) -> LocalExecutor:
    return LocalExecutor(
        docker_host="unix:///tmp/x.sock",
        docker_config=None,
        command=["repo2docker"],
        extra_args=[],
        allowed_git_protocols=["https"],
        allow_local=False,
        environ={"PATH": "/usr/bin", "HOME": str(tmp_path)},
        docker_timeout=1,
    )


def job(provider: str) -> BuildJob:
    content_provider, url, commit = CASES[provider]
    repo = ResolvedRepo(
        provider=provider,
        repo_url=url,
        ref="HEAD",
        commit=commit,
        build_slug=f"slug/{provider}",
        content_provider=content_provider,
    )
    return BuildJob(build_id="b1", image_name=f"reg:5000/p/{provider}:{commit}", repo=repo, push=True)


def load_config(path: Path) -> Config:
    """The config file as repo2docker loads it: Python run with `c` bound to a traitlets Config."""
    c = Config()
    exec(compile(path.read_text(), str(path), "exec"), {"c": c})
    return c


@pytest.mark.parametrize("provider", sorted(CASES))
def test_argv_and_config(tmp_path: Path, provider: str) -> None:
    content_provider, url, commit = CASES[provider]
    argv = executor(tmp_path).argv(job(provider))
    assert argv[-2:] == ["--", url]
    assert argv[argv.index("--ref") + 1] == commit
    assert argv[argv.index("--image-name") + 1] == f"reg:5000/p/{provider}:{commit}"
    config = load_config(Path(argv[argv.index("--config") + 1]))
    cls = getattr(importlib.import_module("repo2docker.contentproviders"), content_provider)
    assert config.Repo2Docker.content_providers == [cls]  # only the provider this dataset needs


def test_dataverse_gets_its_installation_without_a_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from repo2docker.contentproviders import Dataverse

    monkeypatch.setattr(Dataverse, "hosts", None)
    argv = executor(tmp_path).argv(job("dataverse"))
    load_config(Path(argv[argv.index("--config") + 1]))
    assert Dataverse.hosts == [{"hostname": "dataverse.harvard.edu"}]
    # With the hosts set, detection needs no installation list from the internet.
    url = CASES["dataverse"][1]
    assert Dataverse().detect(url) == url


@pytest.mark.parametrize(
    ("provider", "expected"),
    [("zenodo", {"record": "3242074"}), ("figshare", {"article": "9782777", "version": "2"})],
)
def test_repo2docker_reads_our_urls(provider: str, expected: dict[str, Any]) -> None:
    """repo2docker's own detection (offline for URLs) finds the record and version we resolved."""
    module = importlib.import_module("repo2docker.contentproviders")
    content_provider, url, _ = CASES[provider]
    found = getattr(module, content_provider)().detect(url)
    assert found is not None
    assert {k: found[k] for k in expected} == expected
