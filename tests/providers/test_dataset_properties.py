"""Property tests for the dataset providers: spec parsing never crashes and round-trips; the image
names derived from any record identity and version are registry-valid and tell records apart."""

from __future__ import annotations

import contextlib
import ssl
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binder_service.errors import BinderError
from binder_service.images.naming import image_name, is_valid_image_name
from binder_service.providers import Providers, RepoSpec
from binder_service.providers.doi import parse_doi
from binder_service.providers.registry import make_providers as _providers
from binder_service.settings import Settings

_HTTP = httpx.AsyncClient(verify=ssl.create_default_context())  # never used: parsing is offline
PROVIDERS: Providers = _providers(Settings(ckan_hosts=["demo.ckan.org"]), _HTTP)
DATASETS = ["zenodo", "figshare", "hydroshare", "dataverse", "ckan"]

_suffix = st.text(
    st.characters(
        min_codepoint=33, max_codepoint=0x2FF, exclude_categories=("Z", "C"), exclude_characters="%"
    ),
    min_size=1,
)
dois = st.builds(lambda reg, suffix: f"10.{reg}/{suffix}", st.integers(1000, 99999999), _suffix)
awkward = st.one_of(
    st.text(max_size=120),
    dois,
    dois.map(lambda d: quote(d, safe="")),
    st.sampled_from(
        ["doi:", "https://doi.org/", "https://zenodo.org/records/", "https://demo.ckan.org/dataset/"]
    ).flatmap(lambda p: st.text(max_size=60).map(lambda t: p + t)),
)


@pytest.mark.parametrize("name", DATASETS)
@settings(max_examples=300, deadline=None)
@given(text=awkward, ref=st.text(max_size=20))
def test_dataset_specs_never_crash(name: str, text: str, ref: str) -> None:
    provider = PROVIDERS.get(name)
    with contextlib.suppress(BinderError):
        provider.parse_spec(text)
    with contextlib.suppress(BinderError):
        provider.from_repo(text, ref)
    provider.claims(text)  # a plain bool, whatever the input
    PROVIDERS.for_repo(text)


@settings(max_examples=300, deadline=None)
@given(doi=dois, prefix=st.sampled_from(["", "doi:", "DOI:", "https://doi.org/", "http://dx.doi.org/"]))
def test_doi_forms_round_trip(doi: str, prefix: str) -> None:
    if parse_doi(doi) is None:
        assert len(doi.partition("/")[2]) > 300  # the only printable DOIs refused: overlong ones
        return
    assert parse_doi(prefix + doi) == doi
    assert parse_doi(prefix + quote(doi, safe="/")) == doi


@settings(max_examples=300, deadline=None)
@given(record=st.integers(1, 10**12), version=st.integers(1, 10**6))
def test_zenodo_and_figshare_dois_round_trip(record: int, version: int) -> None:
    z = PROVIDERS.get("zenodo")
    assert z.parse_spec(f"10.5281/zenodo.{record}") == RepoSpec("zenodo", f"10.5281/zenodo.{record}", "HEAD")
    assert PROVIDERS.for_repo(f"https://doi.org/10.5281/zenodo.{record}").name == "zenodo"
    f_doi = f"10.6084/m9.figshare.{record}.v{version}"
    assert PROVIDERS.get("figshare").parse_spec(quote(f_doi, safe="")) == RepoSpec("figshare", f_doi, "HEAD")
    assert PROVIDERS.for_repo(f_doi).name == "figshare"


# What the dataset providers produce as (provider, build slug, commit): hosts, ids, DOIs, versions.
slugs = st.one_of(
    st.builds(
        lambda h, i: f"{h}/{i}", st.sampled_from(["zenodo.org", "127.0.0.2:8080"]), st.integers(0, 10**12)
    ),
    st.builds(lambda s: f"dataverse.harvard.edu/10.7910/{s}", _suffix),
    st.text(min_size=1, max_size=300),
)
commits = st.one_of(
    st.integers(0, 10**12).map(str),
    st.integers(0, 10**11).map(lambda e: f"v{e}"),
    st.builds(lambda a, b: f"v{a}.{b}", st.integers(0, 999), st.integers(0, 999)),
    st.text(min_size=1, max_size=200).map(lambda t: f"activity-{t}"),
    st.text(min_size=1, max_size=200),
)


@settings(max_examples=500, deadline=None)
@given(provider=st.sampled_from(DATASETS), slug=slugs, commit=commits)
def test_dataset_image_names_are_valid(provider: str, slug: str, commit: str) -> None:
    name = image_name("registry.example:5000/binder-", f"{provider}-{slug}", commit)
    assert is_valid_image_name(name), name


@settings(max_examples=500, deadline=None)
@given(provider=st.sampled_from(DATASETS), a=slugs, b=slugs, commit=commits)
def test_distinct_records_get_distinct_names(provider: str, a: str, b: str, commit: str) -> None:
    if a == b:
        return
    name_a = image_name("binder-", f"{provider}-{a}", commit).rsplit(":", 1)[0]
    name_b = image_name("binder-", f"{provider}-{b}", commit).rsplit(":", 1)[0]
    assert name_a != name_b


@settings(max_examples=300, deadline=None)
@given(slug=slugs, v1=commits, v2=commits)
def test_versions_of_one_record_share_a_name(slug: str, v1: str, v2: str) -> None:
    one, two = (image_name("binder-", f"zenodo-{slug}", v) for v in (v1, v2))
    assert one.rsplit(":", 1)[0] == two.rsplit(":", 1)[0]
    assert (one == two) == (v1 == v2)
