"""The local executor's command line and environment: nothing user-given can become an option or leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from binder_service.builds.executor import BuildJob
from binder_service.builds.local import LocalExecutor
from binder_service.providers import ResolvedRepo


def executor(tmp_path: Path, docker_config: Path | None = None) -> LocalExecutor:
    return LocalExecutor(
        docker_host="unix:///tmp/x.sock",
        docker_config=docker_config,
        command=["repo2docker"],
        extra_args=["--cache-from", "c"],
        allowed_git_protocols=["https", "git"],
        allow_local=False,
        environ={
            "PATH": "/usr/bin",
            "HOME": str(tmp_path),
            "BINDER_SERVICE_API_TOKENS": "s3cret",
            "JUPYTERHUB_API_TOKEN": "hub-s3cret",
        },
        docker_timeout=1,
    )


def job(url: str, push: bool = True) -> BuildJob:
    repo = ResolvedRepo(provider="git", repo_url=url, ref="main", commit="a" * 40, build_slug=url)
    return BuildJob(build_id="b1", image_name="reg:5000/p/x:" + "a" * 40, repo=repo, push=push)


def test_url_comes_last_after_double_dash(tmp_path: Path) -> None:
    argv = executor(tmp_path).argv(job("--upload-pack=touch /tmp/x"))
    assert argv[-2:] == ["--", "--upload-pack=touch /tmp/x"]
    assert argv.index("--") == len(argv) - 2
    assert "--push" in argv
    assert argv[argv.index("--ref") + 1] == "a" * 40
    assert "--push" not in executor(tmp_path).argv(job("https://h/r", push=False))


def test_only_the_needed_content_provider(tmp_path: Path) -> None:
    ex = executor(tmp_path)  # its workdir (holding the config file) lives as long as it does
    argv = ex.argv(job("https://h/r"))
    config = Path(argv[argv.index("--config") + 1]).read_text()
    assert "c.Repo2Docker.content_providers = [Git]" in config


def test_environment_has_no_service_secrets(tmp_path: Path) -> None:
    env = executor(tmp_path)._env
    assert "BINDER_SERVICE_API_TOKENS" not in env
    assert "JUPYTERHUB_API_TOKEN" not in env
    assert env["DOCKER_HOST"] == "unix:///tmp/x.sock"
    assert env["GIT_ALLOW_PROTOCOL"] == "https:git"
    assert env["GIT_TERMINAL_PROMPT"] == "0"


def test_docker_config_is_offered_as_a_directory(tmp_path: Path) -> None:
    conf = tmp_path / "creds.json"
    conf.write_text("{}")
    ex = executor(tmp_path, conf)
    env = ex._env
    assert (Path(env["DOCKER_CONFIG"]) / "config.json").resolve() == conf.resolve()


async def test_missing_repo2docker_is_a_clear_error_for_builds_and_health(tmp_path: Path) -> None:
    from binder_service.errors import BuilderUnavailable

    ex = LocalExecutor(
        docker_host="unix:///tmp/x.sock",
        docker_config=None,
        command=[str(tmp_path / "no-repo2docker")],
        extra_args=[],
        allowed_git_protocols=["https"],
        allow_local=False,
        environ={"PATH": "/usr/bin"},
        docker_timeout=1,
    )
    with pytest.raises(BuilderUnavailable, match="not installed") as raised:
        await ex.run(job("https://h/r"), lambda phase, message: None)
    assert raised.value.code == "builder_unavailable"
    with pytest.raises(BuilderUnavailable, match="not installed"):
        await ex.check()  # what /health reports
    await ex.aclose()


async def test_broken_repo2docker_fails_the_health_check(tmp_path: Path) -> None:
    from binder_service.errors import BuilderUnavailable

    broken = tmp_path / "repo2docker"
    broken.write_text("#!/bin/sh\necho 'ModuleNotFoundError: No module named repo2docker' >&2\nexit 1\n")
    broken.chmod(0o755)
    ex = LocalExecutor(
        docker_host="unix:///tmp/x.sock",
        docker_config=None,
        command=[str(broken)],
        extra_args=[],
        allowed_git_protocols=["https"],
        allow_local=False,
        environ={"PATH": "/usr/bin:/bin"},
        docker_timeout=1,
    )
    with pytest.raises(BuilderUnavailable, match="No module named repo2docker"):
        await ex.check()
    await ex.aclose()
    assert not ex.workdir.exists()
