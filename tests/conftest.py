"""Shared fixtures: the real world (dockerd, registry, git servers) starts once per session."""

pytest_plugins = [
    "tests.support.fixtures_git",
    "tests.support.fixtures_registry",
    "tests.support.fixtures_engines",
    "tests.support.fixtures_service",
    "tests.support.fixtures_http",
]
