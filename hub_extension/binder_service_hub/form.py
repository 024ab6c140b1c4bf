"""The "Build from repository" part of the spawn form: rendering (escaped) and parsing into user_options.

user_options keys (also accepted from the REST API, `POST /hub/api/users/<name>/server`):

- `binder_build`: whether to build (a form checkbox; default true when `binder_repo` is given by the API)
- `binder_repo`: repository URL or spec, as binder-service accepts it (`https://...`, `git://...`, `org/repo`)
- `binder_ref`: branch, tag or commit (default `HEAD`)
- `binder_provider`: optional provider name (`gh`, `gl`, `gist`, `git`); default: detected by the service
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_REPO_LENGTH = 2048
MAX_REF_LENGTH = 1024
OPTION_KEYS = ("binder_build", "binder_repo", "binder_ref", "binder_provider")
# Whitespace and control characters never belong in a URL, spec or ref.
_BAD_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")
_PROVIDER = re.compile(r"[a-z][a-z0-9_-]{0,31}")
_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@")


@dataclass(frozen=True)
class BuildRequest:
    """What to build for a spawn."""

    repo: str
    ref: str = "HEAD"
    provider: str | None = None


class InvalidBuildRequest(ValueError):
    """The repository, ref or provider given for a build cannot be used (shown to the user)."""


def render_form(
    user_options: Mapping[str, Any] | None = None, *, title: str = "Build from repository"
) -> str:
    """The form section, filled with the previous choices; every value is HTML-escaped."""
    options = user_options or {}
    checked = " checked" if _truthy(options.get("binder_build")) and options.get("binder_repo") else ""
    repo = _attr(options.get("binder_repo"))
    ref = _attr(options.get("binder_ref"))
    legend = html.escape(title)
    return f"""
<fieldset class="binder-build" id="binder-build-section" style="margin-top: 1em">
  <legend>{legend}</legend>
  <div class="form-check">
    <input class="form-check-input" type="checkbox" id="binder-build" name="binder_build" value="on"{checked}>
    <label class="form-check-label" for="binder-build">Build an image from a repository and start the
      server in it</label>
  </div>
  <div class="mb-2">
    <label class="form-label" for="binder-repo">Repository URL</label>
    <input class="form-control" type="text" id="binder-repo" name="binder_repo" value="{repo}"
      maxlength="{MAX_REPO_LENGTH}" placeholder="https://github.com/org/repo" autocomplete="off">
  </div>
  <div class="mb-2">
    <label class="form-label" for="binder-ref">Branch, tag or commit</label>
    <input class="form-control" type="text" id="binder-ref" name="binder_ref" value="{ref}"
      maxlength="{MAX_REF_LENGTH}" placeholder="HEAD" autocomplete="off">
  </div>
</fieldset>
"""


def options_from_form(formdata: Mapping[str, list[str]]) -> dict[str, Any]:
    """The build's user_options from submitted form data (lists of strings); checked as the API's."""
    options: dict[str, Any] = {"binder_build": _first(formdata, "binder_build") == "on"}
    for key in ("binder_repo", "binder_ref", "binder_provider"):
        value = _first(formdata, key).strip()
        if value:
            options[key] = value
    if options["binder_build"]:
        build_request(options)  # refuse bad input on the form, where the user can correct it
    return options


def build_request(user_options: Mapping[str, Any]) -> BuildRequest | None:
    """The build asked for in user_options, or None when none is; InvalidBuildRequest when unusable."""
    repo = user_options.get("binder_repo")
    # From the API, a repository alone asks for a build; the form always sends the checkbox's state.
    if not _truthy(user_options.get("binder_build", bool(repo))):
        return None
    if repo is None or repo == "":
        raise InvalidBuildRequest("Enter the repository to build from.")
    ref = user_options.get("binder_ref") or "HEAD"
    provider = user_options.get("binder_provider") or None
    repo = _text(repo, "repository", MAX_REPO_LENGTH)
    ref = _text(ref, "branch, tag or commit", MAX_REF_LENGTH)
    if provider is not None and (not isinstance(provider, str) or not _PROVIDER.fullmatch(provider)):
        raise InvalidBuildRequest("The repository provider must be a short name such as gh, gl or git.")
    return BuildRequest(repo=repo, ref=ref, provider=provider)


def redact(repo: str) -> str:
    """`repo` for logs and the spawn page: a URL's user and password (if any) replaced by `***`."""
    return _USERINFO.sub(r"\1***@", repo)


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidBuildRequest(f"The {what} must be text.")
    value = value.strip()
    if not value:
        raise InvalidBuildRequest(f"Enter the {what}.")
    if len(value) > limit:
        raise InvalidBuildRequest(f"The {what} is too long (at most {limit} characters).")
    if _BAD_CHARS.search(value):
        raise InvalidBuildRequest(f"The {what} must not contain spaces or control characters.")
    return value


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.lower() in ("on", "true", "1", "yes")
    return bool(value)


def _first(formdata: Mapping[str, list[str]], key: str) -> str:
    values = formdata.get(key) or [""]
    return str(values[0])


def _attr(value: object) -> str:
    return html.escape(value, quote=True) if isinstance(value, str) else ""
