"""The build store: builds, their events and images, in SQLite (default) or PostgreSQL (docs/state.md)."""

from ..db_url import safe_url
from .opening import StoreOpenError, check_store
from .records import ACTIVE, BuildRecord, ImageTouch, Purged
from .store import BuildStore

__all__ = [
    "ACTIVE",
    "BuildRecord",
    "BuildStore",
    "ImageTouch",
    "Purged",
    "StoreOpenError",
    "check_store",
    "safe_url",
]
