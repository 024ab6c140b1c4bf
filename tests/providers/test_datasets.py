"""The dataset providers (zenodo, figshare, hydroshare, dataverse, ckan) against local fakes of doi.org
and each host's API, built from Settings exactly as the app builds them (providers.registry)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from binder_service.errors import (
    DestinationNotAllowed,
    InvalidSpec,
    RefNotFound,
    RepoNotAllowed,
    RepoNotFound,
    RepoUnreachable,
    UpstreamError,
    UpstreamTimeout,
)
from binder_service.images.naming import image_name, is_valid_image_name
from binder_service.providers import Providers, RepoSpec
from binder_service.providers.registry import make_providers as _providers
from binder_service.security.egress import EgressPolicy
from binder_service.settings import Settings
from tests.support.fake_data_apis import (
    FakeCKAN,
    FakeDataverse,
    FakeDoi,
    FakeFigshare,
    FakeHydroShare,
    FakeZenodo,
)

ZENODO_DOI = "10.5281/zenodo.3242074"
CONCEPT_DOI = "10.5281/zenodo.3242073"
HS_ID = "b8f6eae9d89241cf8b5904033460af61"
DV_DOI = "10.7910/DVN/TJCLKP"


@pytest.fixture
def doi() -> Iterator[FakeDoi]:
    with FakeDoi() as fake:
        yield fake


@pytest.fixture
def zenodo(doi: FakeDoi) -> Iterator[FakeZenodo]:
    with FakeZenodo() as fake:
        fake.add(3242074, concept=3242073, version="v1.0")
        doi.register(ZENODO_DOI, f"{fake.url}/doi/{ZENODO_DOI}")
        doi.register(CONCEPT_DOI, f"{fake.url}/doi/{CONCEPT_DOI}")
        yield fake


@pytest.fixture
def figshare() -> Iterator[FakeFigshare]:
    with FakeFigshare() as fake:
        fake.articles[9782777] = [1, 2, 3]
        yield fake


@pytest.fixture
def hydroshare() -> Iterator[FakeHydroShare]:
    with FakeHydroShare() as fake:
        fake.add(HS_ID, "2019-09-25T16:08:44.212624Z")
        yield fake


@pytest.fixture
def dataverse(doi: FakeDoi) -> Iterator[FakeDataverse]:
    with FakeDataverse() as fake:
        fake.add(DV_DOI, major=3, minor=1)
        doi.register(DV_DOI, f"{fake.url}/citation?persistentId=doi:{DV_DOI}")
        yield fake


@pytest.fixture
def ckan() -> Iterator[FakeCKAN]:
    with FakeCKAN(prefix="/data") as fake:
        fake.add("sample-dataset-1", metadata_modified="2023-02-22T14:49:31.960539")
        yield fake


def settings_for(**fakes: Any) -> Settings:
    values: dict[str, Any] = {
        # Short enough to test timeouts quickly, long enough for a loaded 2-core machine.
        "resolve_timeout": 3.0,
        "providers": ["zenodo", "figshare", "hydroshare", "dataverse", "ckan"],
    }
    if "doi" in fakes:
        values["doi_resolver_url"] = fakes["doi"].url
    if "zenodo" in fakes:
        values["zenodo_urls"] = [fakes["zenodo"].url]
    if "figshare" in fakes:
        values["figshare_api_url"] = fakes["figshare"].url + "/v2"
    if "hydroshare" in fakes:
        values["hydroshare_url"] = fakes["hydroshare"].url
    if "dataverse" in fakes:
        values["dataverse_installations"] = [fakes["dataverse"].url]
    return Settings(**values)


@pytest.fixture
def providers(
    http: httpx.AsyncClient,
    doi: FakeDoi,
    zenodo: FakeZenodo,
    figshare: FakeFigshare,
    hydroshare: FakeHydroShare,
    dataverse: FakeDataverse,
) -> Providers:
    s = settings_for(doi=doi, zenodo=zenodo, figshare=figshare, hydroshare=hydroshare, dataverse=dataverse)
    return _providers(s, http)


async def resolve(providers: Providers, name: str, text: str) -> Any:
    p = providers.get(name)
    return await p.resolve(p.parse_spec(text))


# --- zenodo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        ZENODO_DOI,
        f"doi:{ZENODO_DOI}",
        f"https://doi.org/{ZENODO_DOI}",
        "10.5281%2Fzenodo.3242074",
        " 10.5281/zenodo.3242074 ",
    ],
)
def test_zenodo_spec_forms(providers: Providers, text: str) -> None:
    assert providers.get("zenodo").parse_spec(text) == RepoSpec("zenodo", ZENODO_DOI, "HEAD")


def test_zenodo_record_urls_and_refs(providers: Providers, zenodo: FakeZenodo) -> None:
    z = providers.get("zenodo")
    assert z.from_repo(f"{zenodo.url}/record/42", "HEAD").repo == f"{zenodo.url}/records/42"
    for bad in ("not-a-doi", "https://example.org/records/1", f"{zenodo.url}/records/x", "10.5281"):
        with pytest.raises(InvalidSpec):
            z.parse_spec(bad)
    with pytest.raises(InvalidSpec, match="has no refs"):
        z.from_repo(ZENODO_DOI, "main")


async def test_zenodo_resolves_a_version_doi(providers: Providers, doi: FakeDoi, zenodo: FakeZenodo) -> None:
    resolved = await resolve(providers, "zenodo", ZENODO_DOI)
    assert resolved.commit == "3242074"
    assert resolved.repo_url == f"{zenodo.url}/record/3242074"  # the version itself, for repo2docker
    assert resolved.build_slug == f"{zenodo.host}/3242073"  # the concept: shared by all versions
    assert resolved.content_provider == "Zenodo"
    assert [s.path for s in doi.seen] == [f"/{ZENODO_DOI}"]
    assert [s.path for s in zenodo.seen] == [f"/doi/{ZENODO_DOI}", "/api/records/3242074"]
    assert zenodo.seen[-1].headers["accept"] == "application/json"
    assert zenodo.seen[-1].answer_headers["X-RateLimit-Limit"] == "133"


async def test_zenodo_concept_doi_follows_new_versions(
    providers: Providers, doi: FakeDoi, zenodo: FakeZenodo
) -> None:
    first = await resolve(providers, "zenodo", CONCEPT_DOI)
    assert first.commit == "3242074"
    zenodo.add(4000001, concept=3242073, version="v2.0")
    second = await resolve(providers, "zenodo", CONCEPT_DOI)
    assert second.commit == "4000001"
    assert len(doi.seen) == 1  # where the DOI is registered is remembered; the newest version is not
    # Both versions' images share the repository name and differ in tag.
    names = [image_name("r.example/binder-", f"zenodo-{r.build_slug}", r.commit) for r in (first, second)]
    assert names[0].rsplit(":", 1)[0] == names[1].rsplit(":", 1)[0]
    assert [n.rsplit(":", 1)[1] for n in names] == ["3242074", "4000001"]
    assert all(is_valid_image_name(n) for n in names)


async def test_zenodo_record_url_needs_no_doi_lookup(
    providers: Providers, doi: FakeDoi, zenodo: FakeZenodo
) -> None:
    resolved = await resolve(providers, "zenodo", f"{zenodo.url}/records/3242073")  # a concept id
    assert resolved.commit == "3242074"
    assert doi.seen == []


async def test_zenodo_unknown_doi_is_not_found_and_remembered(providers: Providers, doi: FakeDoi) -> None:
    for _ in range(2):
        with pytest.raises(RepoNotFound, match=r"DOI 10\.5281/zenodo\.1 not found"):
            await resolve(providers, "zenodo", "10.5281/zenodo.1")
    assert len(doi.seen) == 1  # the second answer came from the not-found cache


async def test_zenodo_deleted_record(providers: Providers, zenodo: FakeZenodo) -> None:
    zenodo.records[3242074].deleted = "spam"
    with pytest.raises(RepoNotFound, match=r"record 3242074 was deleted \(spam\)"):
        await resolve(providers, "zenodo", f"{zenodo.url}/records/3242074")
    assert zenodo.seen[-1].status == 410


async def test_zenodo_missing_record(providers: Providers, zenodo: FakeZenodo) -> None:
    with pytest.raises(RepoNotFound, match="record 77 not found"):
        await resolve(providers, "zenodo", f"{zenodo.url}/records/77")


async def test_a_doi_of_another_site_is_not_followed(providers: Providers, doi: FakeDoi) -> None:
    doi.register("10.5281/zenodo.55", "https://elsewhere.example/landing/55")
    with pytest.raises(RepoNotFound, match=r"is not a Zenodo record.*elsewhere\.example"):
        await resolve(providers, "zenodo", "10.5281/zenodo.55")


async def test_a_doi_pointing_nowhere_useful(providers: Providers, doi: FakeDoi, zenodo: FakeZenodo) -> None:
    doi.register("10.5281/zenodo.56", f"{zenodo.url}/communities/x")  # on the site, but not a record
    with pytest.raises(RepoNotFound, match="which is not a Zenodo record"):
        await resolve(providers, "zenodo", "10.5281/zenodo.56")


@pytest.mark.parametrize("target", ["doi", "zenodo"])
async def test_zenodo_5xx(providers: Providers, doi: FakeDoi, zenodo: FakeZenodo, target: str) -> None:
    (doi if target == "doi" else zenodo).fail_status = 503
    with pytest.raises(RepoUnreachable, match="503"):
        await resolve(providers, "zenodo", ZENODO_DOI)


@pytest.mark.parametrize("target", ["doi", "zenodo"])
async def test_zenodo_slow_api_times_out(
    providers: Providers, doi: FakeDoi, zenodo: FakeZenodo, target: str
) -> None:
    (doi if target == "doi" else zenodo).delay = 60.0
    # The fake would answer after 60 s: an UpstreamTimeout is our 3 s timeout cutting the call off.
    with pytest.raises(UpstreamTimeout, match=r"(did not answer within|took longer than) 3s"):
        await resolve(providers, "zenodo", ZENODO_DOI)


@pytest.mark.parametrize("kind", ["json", "shape", "html"])
async def test_zenodo_malformed_answers(providers: Providers, zenodo: FakeZenodo, kind: str) -> None:
    zenodo.malformed = kind
    with pytest.raises(UpstreamError) as info:
        await resolve(providers, "zenodo", f"{zenodo.url}/records/3242074")
    assert type(info.value) is UpstreamError
    assert info.value.status == 502


async def test_unreachable_doi_resolver(http: httpx.AsyncClient, zenodo: FakeZenodo) -> None:
    s = settings_for(zenodo=zenodo).model_copy(update={"doi_resolver_url": "http://127.0.0.1:9"})
    with pytest.raises(RepoUnreachable, match="cannot resolve DOI"):
        await resolve(_providers(s, http), "zenodo", ZENODO_DOI)


async def test_doi_redirect_loops_end(providers: Providers, doi: FakeDoi, zenodo: FakeZenodo) -> None:
    doi.register("10.5281/zenodo.57", f"{zenodo.url}/doi/10.5281/zenodo.57")  # the fake answers 404 there
    with pytest.raises(RepoNotFound):
        await resolve(providers, "zenodo", "10.5281/zenodo.57")


# --- figshare -------------------------------------------------------------------------------------


async def test_figshare_versions(providers: Providers, figshare: FakeFigshare, doi: FakeDoi) -> None:
    v1 = await resolve(providers, "figshare", "10.6084/m9.figshare.9782777.v1")
    assert (v1.commit, v1.build_slug, v1.content_provider) == ("v1", "figshare.com/9782777", "Figshare")
    assert v1.repo_url == "https://figshare.com/articles/_/9782777/1"  # the form repo2docker reads
    newest = await resolve(providers, "figshare", "doi:10.6084/m9.figshare.9782777")
    assert newest.commit == "v3"
    assert newest.build_slug == v1.build_slug
    url = await resolve(
        providers, "figshare", "https%3A%2F%2Ffigshare.com%2Farticles%2Fdataset%2FTitle%2F9782777%2F2"
    )
    assert url.commit == "v2"
    assert doi.seen == []  # Figshare's own DOIs name the article: no lookup
    assert {s.path for s in figshare.seen} == {"/v2/articles/9782777/versions"}


async def test_figshare_errors(providers: Providers, figshare: FakeFigshare) -> None:
    with pytest.raises(RefNotFound, match="no version 9"):
        await resolve(providers, "figshare", "10.6084/m9.figshare.9782777.v9")
    with pytest.raises(RepoNotFound, match="article 1 not found"):
        await resolve(providers, "figshare", "10.6084/m9.figshare.1")
    with pytest.raises(InvalidSpec):
        await resolve(providers, "figshare", "10.6084/not-figshare")
    figshare.malformed = "shape"
    with pytest.raises(UpstreamError):
        await resolve(providers, "figshare", "10.6084/m9.figshare.9782777.v2")
    figshare.malformed, figshare.fail_status = None, 500
    with pytest.raises(RepoUnreachable):
        await resolve(providers, "figshare", "10.6084/m9.figshare.9782777.v3")


async def test_figshare_portal_doi_goes_through_doi_org(providers: Providers, doi: FakeDoi) -> None:
    doi.register("10.25909/12345.v2", "https://monash.figshare.com/articles/dataset/Data/9782777/2")
    resolved = await resolve(providers, "figshare", "10.25909/12345.v2")
    assert resolved.commit == "v2"
    doi.register("10.25909/666", "https://example.org/articles/x/9782777/1")
    with pytest.raises(RepoNotFound, match="not a Figshare article"):
        await resolve(providers, "figshare", "10.25909/666")


# --- hydroshare -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        "{url}/resource/{id}",
        "{url}/resource/{id}/",
        "{id}",
        "10.4211/hs.{id}",
        "https://doi.org/10.4211/hs.{id}",
    ],
)
async def test_hydroshare_spec_forms(providers: Providers, hydroshare: FakeHydroShare, form: str) -> None:
    text = form.format(url=hydroshare.url, id=HS_ID)
    resolved = await resolve(providers, "hydroshare", text)
    epoch = int(datetime.fromisoformat("2019-09-25T16:08:44.212624+00:00").timestamp())
    assert resolved.commit == f"v{epoch}"
    assert resolved.repo_url == f"{hydroshare.url}/resource/{HS_ID}"
    assert (resolved.build_slug, resolved.content_provider) == (f"{hydroshare.host}/{HS_ID}", "Hydroshare")
    assert hydroshare.seen[-1].path == f"/hsapi/resource/{HS_ID}/scimeta/elements"


async def test_hydroshare_a_change_is_a_new_version(providers: Providers, hydroshare: FakeHydroShare) -> None:
    before = await resolve(providers, "hydroshare", HS_ID)
    hydroshare.resources[HS_ID].modified = "2024-01-01T00:00:00.000001Z"
    after = await resolve(providers, "hydroshare", HS_ID)
    assert before.commit != after.commit
    assert before.build_slug == after.build_slug


async def test_hydroshare_errors(providers: Providers, hydroshare: FakeHydroShare) -> None:
    with pytest.raises(InvalidSpec):
        providers.get("hydroshare").parse_spec("not-a-resource")
    with pytest.raises(RepoNotFound, match=r"resource 0{32} not found"):
        await resolve(providers, "hydroshare", "0" * 32)
    hydroshare.add("1" * 32, "2020-01-01T00:00:00Z", public=False)
    with pytest.raises(RepoUnreachable, match=r"refused the request \(HTTP 403\)"):  # a private resource
        await resolve(providers, "hydroshare", "1" * 32)
    hydroshare.add("2" * 32, "yesterday")
    with pytest.raises(UpstreamError, match="unreadable"):
        await resolve(providers, "hydroshare", "2" * 32)
    hydroshare.malformed = "json"
    with pytest.raises(UpstreamError, match="malformed JSON"):
        await resolve(providers, "hydroshare", HS_ID)


# --- dataverse ------------------------------------------------------------------------------------


async def test_dataverse_doi(providers: Providers, dataverse: FakeDataverse, doi: FakeDoi) -> None:
    resolved = await resolve(providers, "dataverse", DV_DOI)
    assert resolved.commit == "v3.1"
    assert resolved.build_slug == f"{dataverse.host}/{DV_DOI}"
    assert resolved.repo_url == f"{dataverse.url}/dataset.xhtml?persistentId=doi:{DV_DOI}"
    assert resolved.content_provider == "Dataverse"
    assert dataverse.seen[-1].path == f"/api/datasets/:persistentId?persistentId=doi:{DV_DOI}"
    dataverse.datasets[f"DOI:{DV_DOI}"].major = 4
    assert (await resolve(providers, "dataverse", f"doi:{DV_DOI}")).commit == "v4.1"
    assert len(doi.seen) == 1


async def test_dataverse_dataset_url(providers: Providers, dataverse: FakeDataverse, doi: FakeDoi) -> None:
    text = f"{dataverse.url}/dataset.xhtml?persistentId=doi:{DV_DOI}"
    assert (await resolve(providers, "dataverse", text)).commit == "v3.1"
    assert doi.seen == []


async def test_dataverse_errors(providers: Providers, dataverse: FakeDataverse, doi: FakeDoi) -> None:
    doi.register("10.7910/DVN/GONE", f"{dataverse.url}/citation?persistentId=doi:10.7910/DVN/GONE")
    with pytest.raises(RepoNotFound, match="DVN/GONE not found"):
        await resolve(providers, "dataverse", "10.7910/DVN/GONE")
    doi.register(
        "10.7910/DVN/ELSE", "https://dataverse.example.org/citation?persistentId=doi:10.7910/DVN/ELSE"
    )
    with pytest.raises(RepoNotFound, match="configured Dataverse installation"):
        await resolve(providers, "dataverse", "10.7910/DVN/ELSE")
    dataverse.add("10.7910/DVN/OLD", state="DEACCESSIONED")
    doi.register("10.7910/DVN/OLD", f"{dataverse.url}/dataset.xhtml?persistentId=doi:10.7910/DVN/OLD")
    with pytest.raises(RepoNotFound, match="deaccessioned"):
        await resolve(providers, "dataverse", "10.7910/DVN/OLD")
    dataverse.malformed = "shape"
    with pytest.raises(UpstreamError):
        await resolve(providers, "dataverse", DV_DOI)


# --- ckan -----------------------------------------------------------------------------------------


def ckan_spec(url: str) -> str:
    from urllib.parse import quote

    return quote(url, safe="")


async def test_ckan_dataset(providers: Providers, ckan: FakeCKAN) -> None:
    url = f"{ckan.url}/data/dataset/sample-dataset-1"
    resolved = await resolve(providers, "ckan", ckan_spec(url))
    epoch = int(datetime.fromisoformat("2023-02-22T14:49:31.960539+00:00").timestamp())
    assert resolved.commit == f"v{epoch}"
    assert resolved.repo_url == url
    dataset = ckan.datasets["sample-dataset-1"]
    assert resolved.build_slug == f"{ckan.host}/data/{dataset.id}"
    assert resolved.content_provider == "CKAN"
    assert ckan.seen[-1].path == "/data/api/3/action/package_show?id=sample-dataset-1"
    history = await resolve(providers, "ckan", ckan_spec(f"{url}/history/0b5b7e3f-aaaa"))
    assert (history.commit, history.build_slug) == ("activity-0b5b7e3f-aaaa", resolved.build_slug)
    assert history.repo_url == f"{url}/history/0b5b7e3f-aaaa"


async def test_ckan_errors(providers: Providers, ckan: FakeCKAN) -> None:
    base = f"{ckan.url}/data/dataset/"
    with pytest.raises(RepoNotFound, match="nope not found"):
        await resolve(providers, "ckan", ckan_spec(base + "nope"))
    ckan.add("secret", private=True)
    with pytest.raises(RepoUnreachable, match=r"refused the request \(HTTP 403\)"):  # a private dataset
        await resolve(providers, "ckan", ckan_spec(base + "secret"))
    for bad in ("ftp://x/dataset/a", f"{ckan.url}/data/groups/a", base + "a%20b", "https://u:p@h/dataset/a"):
        with pytest.raises(InvalidSpec):
            providers.get("ckan").parse_spec(ckan_spec(bad))
    with pytest.raises(InvalidSpec, match="has no refs"):
        providers.get("ckan").parse_spec(ckan_spec(base + "sample-dataset-1") + "/main")
    ckan.delay = 60
    with pytest.raises(UpstreamTimeout):
        await resolve(providers, "ckan", ckan_spec(base + "sample-dataset-1"))


async def test_ckan_allowed_hosts(http: httpx.AsyncClient, ckan: FakeCKAN) -> None:
    s = Settings(ckan_hosts=[ckan.host], providers=["gh", "ckan", "git"], resolve_timeout=3.0)
    providers = _providers(s, http)
    url = f"{ckan.url}/data/dataset/sample-dataset-1"
    assert providers.for_repo(url).name == "ckan"
    assert providers.for_repo("https://elsewhere.example/dataset/x").name == "git"
    with pytest.raises(RepoNotAllowed, match="not one of the allowed CKAN hosts"):
        providers.get("ckan").from_repo("https://elsewhere.example/dataset/x", "HEAD")
    assert (await providers.get("ckan").resolve(providers.get("ckan").from_repo(url, "HEAD"))).commit


# --- detection in the native API ------------------------------------------------------------------


def test_native_api_detection(providers: Providers, zenodo: FakeZenodo, dataverse: FakeDataverse) -> None:
    s = Settings(zenodo_urls=[zenodo.url], dataverse_installations=[dataverse.url])
    everything = _providers(s, httpx.AsyncClient())
    cases = {
        ZENODO_DOI: "zenodo",
        f"https://doi.org/{ZENODO_DOI}": "zenodo",
        f"{zenodo.url}/records/3242074": "zenodo",
        "10.6084/m9.figshare.9782777.v1": "figshare",
        "https://figshare.com/articles/dataset/x/9782777/1": "figshare",
        f"https://www.hydroshare.org/resource/{HS_ID}": "hydroshare",
        f"10.4211/hs.{HS_ID}": "hydroshare",
        f"doi:{DV_DOI}": "dataverse",
        f"{dataverse.url}/dataset.xhtml?persistentId=doi:{DV_DOI}": "dataverse",
        "https://github.com/org/repo": "gh",
        "https://demo.ckan.org/dataset/x": "git",  # CKAN is detected on configured hosts only
        "https://example.org/records/1": "git",
    }
    assert {repo: everything.for_repo(repo).name for repo in cases} == cases
    spec = everything.for_repo(ZENODO_DOI).from_repo(ZENODO_DOI, "HEAD")
    assert spec == RepoSpec("zenodo", ZENODO_DOI, "HEAD")


# --- egress ---------------------------------------------------------------------------------------


@pytest.fixture
async def guarded(doi: FakeDoi) -> AsyncIterator[httpx.AsyncClient]:
    """The production client, allowing only the fake doi.org's address among private ones."""
    policy = EgressPolicy(allow_private=False, allowed_networks=[f"{doi.address}/32"])
    async with policy.http_client(timeout=2.0, verify=ssl.create_default_context()) as client:
        yield client


async def test_a_redirect_to_a_private_address_is_refused(
    guarded: httpx.AsyncClient, doi: FakeDoi, zenodo: FakeZenodo
) -> None:
    providers = _providers(settings_for(doi=doi, zenodo=zenodo), guarded)
    with pytest.raises(DestinationNotAllowed, match="private networks are not allowed"):
        await resolve(providers, "zenodo", ZENODO_DOI)
    assert len(doi.seen) == 1  # doi.org answered; the hop to the private address was never made
    assert zenodo.seen == []


async def test_a_ckan_site_on_a_private_address_is_refused(
    guarded: httpx.AsyncClient, ckan: FakeCKAN
) -> None:
    providers = _providers(Settings(providers=["ckan"]), guarded)
    with pytest.raises(DestinationNotAllowed):
        await resolve(providers, "ckan", ckan_spec(f"{ckan.url}/data/dataset/sample-dataset-1"))
    assert ckan.seen == []


# --- concurrency ----------------------------------------------------------------------------------


async def test_concurrent_resolutions_share_one_lookup(providers: Providers, zenodo: FakeZenodo) -> None:
    zenodo.delay = 0.2
    results = await asyncio.gather(*(resolve(providers, "zenodo", ZENODO_DOI) for _ in range(20)))
    assert {r.commit for r in results} == {"3242074"}
    assert len(zenodo.requests_to("/api/records/")) == 1
