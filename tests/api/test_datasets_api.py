"""The dataset providers through both API faces: a real service (real uvicorn, registry, dockerd) whose
providers talk to local fakes of doi.org and Zenodo; the build step is a recording executor, because
repo2docker's Zenodo provider would download from the real zenodo.org (tests/builds/test_dataset_builds.py
checks what repo2docker would be told)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from binder_service.builds.executor import BuildJob, Emit
from binder_service.errors import BuildError
from binder_service.events import Phase
from binder_service.settings import Settings
from tests.support.fake_data_apis import FakeDoi, FakeZenodo
from tests.support.service import running_service, sse_messages

pytestmark = pytest.mark.docker

DOI = "10.5281/zenodo.3242074"


class RecordingExecutor:
    """Stands in for repo2docker: remembers the job and stops there with a readable message."""

    def __init__(self) -> None:
        self.jobs: list[BuildJob] = []

    async def run(self, job: BuildJob, emit: Emit) -> None:
        self.jobs.append(job)
        emit(Phase.FETCHING, f"would fetch {job.repo.repo_url} with {job.repo.content_provider}\n")
        raise BuildError("the test executor stops before repo2docker")

    async def check(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


@pytest.fixture
def fakes() -> Iterator[tuple[FakeDoi, FakeZenodo]]:
    with FakeDoi() as doi, FakeZenodo() as zenodo:
        zenodo.add(3242074, concept=3242073)
        doi.register(DOI, f"{zenodo.url}/doi/{DOI}")
        yield doi, zenodo


@pytest.fixture
def service(
    make_settings: Callable[..., Settings], fakes: tuple[FakeDoi, FakeZenodo]
) -> Iterator[tuple[str, RecordingExecutor]]:
    doi, zenodo = fakes
    runner = RecordingExecutor()
    settings = make_settings(doi_resolver_url=doi.url, zenodo_urls=[zenodo.url])
    with running_service(settings, executor=runner) as url:
        yield url, runner


def test_repoproviders_lists_the_dataset_providers(service: tuple[str, RecordingExecutor]) -> None:
    url, _ = service
    listed = {p["id"]: p for p in httpx.get(f"{url}api/repoproviders").json()}
    assert {"zenodo", "figshare", "hydroshare", "dataverse", "ckan"} <= set(listed)
    zenodo: dict[str, Any] = listed["zenodo"]
    assert zenodo["display_name"] == "Zenodo DOI"
    assert zenodo["spec"] == {"example": "10.5281/zenodo.3242074", "regex": r"^(?P<doi>10\.\d+/.+)$"}


def test_binderhub_build_of_a_doi_reaches_the_build(service: tuple[str, RecordingExecutor]) -> None:
    url, runner = service
    messages = sse_messages(f"{url}build/zenodo/{DOI}?build_only=true", timeout=30)
    assert messages[-1]["phase"] == "failed"
    assert "the test executor stops before repo2docker" in messages[-1]["message"]
    [job] = runner.jobs
    assert job.repo.content_provider == "Zenodo"
    assert job.repo.repo_url.endswith("/record/3242074")
    assert job.repo.commit == "3242074"
    assert job.image_name.endswith(":3242074")


def test_native_api_detects_a_doi(service: tuple[str, RecordingExecutor]) -> None:
    url, _ = service
    r = httpx.post(f"{url}api/v1/builds", json={"repo": f"https://doi.org/{DOI}"}, timeout=30)
    assert r.status_code in (200, 201, 202), r.text
    build = r.json()
    assert (build["provider"], build["commit"]) == ("zenodo", "3242074")
    assert build["image_name"].endswith(":3242074")


@pytest.mark.parametrize(
    ("spec", "code"),
    [("10.5281/zenodo.999", "repo_not_found"), ("not-a-doi", "invalid_spec")],
)
def test_bad_dataset_specs_are_clear_errors(
    service: tuple[str, RecordingExecutor], spec: str, code: str
) -> None:
    url, runner = service
    messages = sse_messages(f"{url}build/zenodo/{spec}?build_only=true", timeout=30)
    assert messages[-1]["phase"] == "failed"
    assert messages[-1]["code"] == code
    assert messages[-1]["message"].strip()
    r = httpx.post(f"{url}api/v1/builds", json={"repo": spec, "provider": "zenodo"}, timeout=30)
    assert (r.status_code, r.json()["code"]) == ({"repo_not_found": 404, "invalid_spec": 400}[code], code)
    assert runner.jobs == []
