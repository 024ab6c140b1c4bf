"""The operator's spec policy: banned and allowed repositories, and per-repository options (quota).

Every pattern is a case-insensitive regular expression searched (`re.search`: anchor it with `^...$` to
match the whole string) in one normalised string per request, the same for both API faces:

    <provider>/<repository>        e.g. gh/org/repo, gl/group/sub/project, gist/user/abc123,
                                   git/https://example.org/repo.git

The repository part is what the provider made of the request, without the ref: GitHub's `org/repo`
(a `.git` suffix and URL form removed), GitLab's unescaped project path, the git URL as given.
The check runs before anything is resolved, so a banned repository costs no network call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from .errors import RepoBanned

__all__ = ["NamedSpec", "SpecPolicy", "SpecRule", "compile_patterns", "parse_spec_config", "spec_key"]

DEFAULT_BANNED_MESSAGE: Final = "This repository cannot be built here."
_OPTIONS: Final = {"quota": int}  # per-spec options and their types


class NamedSpec(Protocol):
    """What the policy reads of a request's spec (a provider's `RepoSpec`): the policy is a leaf the
    settings import without the providers."""

    @property
    def provider(self) -> str: ...

    @property
    def repo(self) -> str: ...


def spec_key(spec: NamedSpec) -> str:
    """The string every pattern is matched against: `<provider>/<repository>`."""
    return f"{spec.provider}/{spec.repo}"


def compile_patterns(patterns: Iterable[str | re.Pattern[str]], what: str) -> list[re.Pattern[str]]:
    """Case-insensitive regexes; ValueError naming the bad pattern (a settings error at startup)."""
    compiled = []
    for pattern in patterns:
        if isinstance(pattern, re.Pattern):  # compiled already (Settings keep what they parse)
            compiled.append(pattern)
            continue
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as e:
            raise ValueError(f"{what}: {pattern!r} is not a valid regular expression ({e})") from e
    return compiled


@dataclass(frozen=True)
class SpecRule:
    """Options for repositories matching `pattern` (the first matching rule applies)."""

    pattern: re.Pattern[str]
    quota: int | None = None  # most builds of matching repositories queued or running at once


def parse_spec_config(entries: Iterable[Mapping[str, Any] | SpecRule]) -> list[SpecRule]:
    """`[{"pattern": regex, "quota": n}, ...]` (BinderHub's `{"pattern", "config": {...}}` too) as rules."""
    rules = []
    for index, entry in enumerate(entries):
        where = f"spec_config[{index}]"
        if isinstance(entry, SpecRule):  # parsed already (Settings keep what they parse)
            rules.append(entry)
            continue
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be an object with a 'pattern'")
        options = dict(entry)
        options.update(options.pop("config", None) or {})
        pattern = options.pop("pattern", None)
        if not isinstance(pattern, str):
            raise ValueError(f"{where} needs a 'pattern' (a regular expression)")
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ValueError(f"{where}: unknown options {unknown} (known: {', '.join(_OPTIONS)})")
        quota = options.get("quota")
        if quota is not None and (not isinstance(quota, int) or isinstance(quota, bool) or quota < 0):
            raise ValueError(f"{where}: quota must be a whole number >= 0")
        rules.append(SpecRule(compile_patterns([pattern], where)[0], quota=quota))
    return rules


class SpecPolicy:
    """Checks a spec against the banned/allowed patterns and finds its rule (`Admission` holds quotas)."""

    def __init__(
        self,
        *,
        banned: Iterable[str | re.Pattern[str]] = (),
        banned_message: str = "",
        allowed: Iterable[str | re.Pattern[str]] = (),
        spec_config: Iterable[Mapping[str, Any] | SpecRule] = (),
    ) -> None:
        self._banned = compile_patterns(banned, "banned_specs")
        self._allowed = compile_patterns(allowed, "allowed_specs")
        self._message = banned_message.strip() or DEFAULT_BANNED_MESSAGE
        self._rules = parse_spec_config(spec_config)

    def check(self, spec: NamedSpec) -> SpecRule | None:
        """RepoBanned if the policy refuses `spec`; else the rule with its options (None if none matches)."""
        key = spec_key(spec)
        shown = key[:200]
        if any(p.search(key) for p in self._banned):
            raise RepoBanned(f"{shown} is not allowed: {self._message}")
        if self._allowed and not any(p.search(key) for p in self._allowed):
            raise RepoBanned(f"{shown} is not on the list of allowed repositories: {self._message}")
        return self.rule(key)

    def rule(self, key: str) -> SpecRule | None:
        """The first rule whose pattern matches `key` (`spec_key`), with its options; None if none does."""
        return next((r for r in self._rules if r.pattern.search(key)), None)
