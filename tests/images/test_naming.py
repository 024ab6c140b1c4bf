"""Image names: a table of known cases, and properties over arbitrary input (hypothesis)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from binder_service.images.naming import (
    build_pod_name,
    image_name,
    is_valid_image_name,
    qualified_prefix,
    safe_tag,
    slugify,
    validate_prefix,
)

SHA = "3f9c0a1b2c3d4e5f60718293a4b5c6d7e8f90123"


@pytest.mark.parametrize(
    ("prefix", "registry", "expected"),
    [
        ("binder-", "", "binder-"),
        ("binder-", "http://127.0.0.1:5055", "127.0.0.1:5055/binder-"),
        ("org/binder-", "https://quay.io", "quay.io/org/binder-"),
        ("quay.io/org/binder-", "https://quay.io", "quay.io/org/binder-"),
        ("localhost/x-", "http://localhost:5000", "localhost/x-"),
        ("reg:5000/x-", "http://other:1", "reg:5000/x-"),
    ],
)
def test_qualified_prefix(prefix: str, registry: str, expected: str) -> None:
    assert qualified_prefix(prefix, registry) == expected


@pytest.mark.parametrize(
    ("identity", "ref", "expected"),
    [
        (
            "git-git://127.0.0.1:9419/hello",
            SHA,
            f"p/git-git-127-0-0-1-9419-hello-{slugify('git-git://127.0.0.1:9419/hello')[-10:]}:{SHA}",
        ),
    ],
)
def test_image_name_table(identity: str, ref: str, expected: str) -> None:
    assert image_name("p/", identity, ref) == expected


def test_same_input_same_name_and_case_matters() -> None:
    a = image_name("p/", "git-https://h/Org/Repo", SHA)
    assert a == image_name("p/", "git-https://h/Org/Repo", SHA)
    # Escaping folds case and punctuation together; the hash keeps them apart.
    assert a != image_name("p/", "git-https://h/org/repo", SHA)
    assert image_name("p/", "git-a/b", SHA) != image_name("p/", "git-a.b", SHA)


@pytest.mark.parametrize("prefix", ["Binder-", "bad prefix", "x//y", "-lead", "a/-b"])
def test_invalid_prefix_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="image prefix"):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    ("ref", "valid_as_is"),
    [(SHA, True), ("v1.0", True), ("feature/x", False), ("-x", False), ("", False), ("a" * 200, False)],
)
def test_safe_tag(ref: str, valid_as_is: bool) -> None:
    tag = safe_tag(ref)
    assert (tag == ref) is valid_as_is
    assert is_valid_image_name(f"x:{tag}")


prefixes = st.sampled_from(["", "binder-", "127.0.0.1:5055/binder-", "quay.io/org/", "a/b/c-"])


@given(prefix=prefixes, identity=st.text(max_size=3000), ref=st.text(max_size=300))
def test_names_are_always_registry_valid(prefix: str, identity: str, ref: str) -> None:
    name = image_name(prefix, identity, ref)
    assert is_valid_image_name(name), name
    assert len(name.rsplit(":", 1)[0]) <= 255


@given(a=st.text(min_size=1, max_size=200), b=st.text(min_size=1, max_size=200))
def test_distinct_identities_get_distinct_slugs(a: str, b: str) -> None:
    if a != b:
        assert slugify(a) != slugify(b)


DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("binder-x:v1", "build-binder-x-0f78bdaf2f737e2a"),
        (
            "127.0.0.1:5055/binder-git-git-127-0-0-1-9419-hello-0123456789:" + "a" * 40,
            "build-binder-git-git-127-0-0-1-9419-hello-0123-d004831630b4b413",
        ),
        ("quay.io/org/" + "Z" * 300 + ":t", "build-" + "z" * 40 + "-da3260f5920bdf0a"),
        ("reg:5000/---:t", "build-7ce4079cda36606b"),  # nothing readable: the hash alone
    ],
)
def test_build_pod_name_table(image: str, expected: str) -> None:
    assert build_pod_name(image) == expected


@given(a=st.text(min_size=1, max_size=400), b=st.text(min_size=1, max_size=400))
def test_build_pod_names_are_dns_labels_and_distinct(a: str, b: str) -> None:
    name = build_pod_name(a)
    assert len(name) <= 63
    assert DNS_LABEL.fullmatch(name), name
    assert name == build_pod_name(a)
    if a != b:
        assert name != build_pod_name(b)
