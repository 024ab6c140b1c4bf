"""The build store: builds, their events and images, in SQLite (default) or PostgreSQL (docs/state.md)."""

from .engine import StoreOpenError, check_store, head_revision, safe_url
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
    "head_revision",
    "safe_url",
]
