"""The providers there are, by name, in the default detection order (the catch-all `git` last).

A leaf: the settings validate `providers` against it without importing the providers (and httpx with
them). `providers/registry.py` checks at import that its classes are exactly these, in this order.
"""

from __future__ import annotations

from typing import Final

__all__ = ["PROVIDER_ORDER"]

PROVIDER_ORDER: Final = ("gh", "gl", "gist", "zenodo", "figshare", "hydroshare", "dataverse", "ckan", "git")
