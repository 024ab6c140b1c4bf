"""The release command's parts that need no Docker engine: versions, stamping, bad input, and the release
workflow (which cannot run here) calling it with arguments it accepts."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import release

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


@pytest.mark.parametrize(
    ("text", "python", "chart"),
    [
        ("1.2.0", "1.2.0", "1.2.0"),
        ("v1.2.0", "1.2.0", "1.2.0"),
        ("1.2.0rc1", "1.2.0rc1", "1.2.0-rc1"),
        ("v0.10.3b2", "0.10.3b2", "0.10.3-b2"),
        ("2.0.0a10", "2.0.0a10", "2.0.0-a10"),
        ("01.2.03", "1.2.3", "1.2.3"),
    ],
)
def test_version_spellings(text: str, python: str, chart: str) -> None:
    assert release.Version.parse(text) == release.Version(python=python, chart=chart)


@pytest.mark.parametrize("text", ["", "1.2", "1.2.0.1", "1.2.0-rc1", "1.2.0.dev1", "latest", "1.2.0rc", "v"])
def test_versions_the_artifacts_cannot_all_carry_are_refused(text: str) -> None:
    with pytest.raises(release.ReleaseError, match="is not of the form"):
        release.Version.parse(text)


def test_stamp_writes_every_version_field(tmp_path: Path) -> None:
    for rel in [*release.VERSION_FILES, "chart/Chart.yaml", *release.CLIENT_DEPENDENTS]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    release.stamp(tmp_path, release.Version.parse("3.4.5rc2"))
    for rel in release.VERSION_FILES:
        assert re.findall(r'^__version__ = "(.*)"$', (tmp_path / rel).read_text(), re.M) == ["3.4.5rc2"]
    chart = yaml.safe_load((tmp_path / "chart/Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == ("3.4.5-rc2", "3.4.5rc2")
    # The service's and the hub side's dependency on the client (a folder in the tree) is pinned.
    for rel in release.CLIENT_DEPENDENTS:
        deps = tomllib.loads((tmp_path / rel).read_text())["project"]["dependencies"]
        assert [d for d in deps if d.startswith("binder-service")] == ["binder-service-client==3.4.5rc2"]
    # Only those fields changed.
    before = yaml.safe_load((ROOT / "chart/Chart.yaml").read_text())
    assert {k: v for k, v in chart.items() if k not in ("version", "appVersion")} == {
        k: v for k, v in before.items() if k not in ("version", "appVersion")
    }


def test_stamp_refuses_a_file_without_its_version_line(tmp_path: Path) -> None:
    for rel in [*release.VERSION_FILES, "chart/Chart.yaml", *release.CLIENT_DEPENDENTS]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    (tmp_path / "hub_extension/binder_service_hub/__init__.py").write_text("VERSION = '1'\n")
    with pytest.raises(release.ReleaseError, match="expected one line matching"):
        release.stamp(tmp_path, release.Version.parse("1.0.0"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["1.2"], "is not of the form"),
        (["1.2.0", "--push"], "--push needs --image-prefix"),
        (["1.2.0", "--merge-index", "/nonexistent/index.yaml"], "no such file"),
    ],
)
def test_bad_arguments_get_a_message_not_a_traceback(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "release.sh"), *args], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


# --- the workflow ----------------------------------------------------------------------------------------


def _workflow() -> dict[str, Any]:
    data: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def _steps(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses)]


def test_the_workflow_runs_on_version_tags_and_calls_the_release_script() -> None:
    wf = _workflow()
    assert wf["on"] == {"push": {"tags": ["v*"]}}
    build = wf["jobs"]["build"]
    (step,) = [s for s in build["steps"] if "scripts/release.sh" in s.get("run", "")]
    # The command line as the runner's shell would see it, with example values for its variables.
    example = {
        "GITHUB_REF_NAME": "v1.2.0",
        "IMAGE_PREFIX": "ghcr.io/org",
        "CHART_URL": "https://org.github.io/binder-service/",
        "MERGE_INDEX": "",
    }
    line = re.sub(r"\$\{?(\w+)\}?", lambda m: example[m.group(1)], step["run"].strip())
    argv = shlex.split(line)
    assert argv[0] == "scripts/release.sh"
    opts = release.parse_args(argv[1:])
    assert opts.version == release.Version("1.2.0", "1.2.0")
    assert opts.push
    assert opts.images
    assert opts.image_prefix == "ghcr.io/org"
    assert opts.chart_url == example["CHART_URL"]
    assert opts.dist == ROOT / "dist"
    # With a published index to merge (the step before sets MERGE_INDEX), the same line still parses.
    example["MERGE_INDEX"] = f"--merge-index={WORKFLOW}"
    argv = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: example[m.group(1)], step["run"].strip()))
    assert release.parse_args(argv[1:]).merge_index == WORKFLOW
    assert build["permissions"]["packages"] == "write"
    assert _steps(build, "actions/upload-artifact")[0]["with"]["path"] == "dist/"


def test_the_workflow_publishes_what_the_script_made() -> None:
    jobs = _workflow()["jobs"]
    (pypi,) = _steps(jobs["pypi"], "pypa/gh-action-pypi-publish")
    assert pypi["with"]["packages-dir"] == "dist/python/"
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    (pages,) = _steps(jobs["chart"], "peaceiris/actions-gh-pages")
    assert pages["with"]["publish_dir"] == "dist/chart"
    assert pages["with"]["keep_files"] is True
    assert (jobs["pypi"]["needs"], jobs["chart"]["needs"]) == ("build", "build")
    assert set(jobs["github-release"]["needs"]) == {"pypi", "chart"}
    for name in ("pypi", "chart", "github-release"):
        (download,) = _steps(jobs[name], "actions/download-artifact")
        assert download["with"] == {"name": "dist", "path": "dist/"}
    # Nothing is built twice: only the build job runs the script.
    runs = [s.get("run", "") for job in jobs.values() for s in job["steps"]]
    assert sum("scripts/release.sh" in r for r in runs) == 1


def test_the_install_page_names_what_a_release_publishes() -> None:
    """docs/install.md names the artifacts as the script and the workflow make them."""
    page = (ROOT / "docs" / "install.md").read_text()
    for name in (
        f"ghcr.io/<owner>/{release.SERVICE_IMAGE}:<version>",
        f"ghcr.io/<owner>/{release.HUB_IMAGE}:<version>",
        release.HUB_BASE,
        release.SERVICE_BASE,
        "https://<owner>.github.io/<repo>/",
        "pip install binder-service",
        "pip install binder-service-hub",
        "pip install binder-service-client",
    ):
        assert name in page, name
    step = next(s for s in _workflow()["jobs"]["build"]["steps"] if "IMAGE_PREFIX=" in s.get("run", ""))
    assert "ghcr.io/${owner}" in step["run"]
    assert "https://${owner}.github.io/${GITHUB_REPOSITORY#*/}/" in step["run"]
