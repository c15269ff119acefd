"""Persistence of versioned playbooks on SQLAlchemy (SQLite by default, PostgreSQL at scale)."""

from ace.store.errors import (
    PlaybookExists,
    PlaybookNotFound,
    StaleVersionError,
    StoreError,
    StoreIntegrityError,
    VersionNotFound,
)
from ace.store.store import (
    DEFAULT_NAMESPACE,
    BlameEntry,
    PlaybookInfo,
    PlaybookStore,
    VersionInfo,
    create_tables,
    default_url,
    make_engine,
)

__all__ = [
    "DEFAULT_NAMESPACE",
    "BlameEntry",
    "PlaybookExists",
    "PlaybookInfo",
    "PlaybookNotFound",
    "PlaybookStore",
    "StaleVersionError",
    "StoreError",
    "StoreIntegrityError",
    "VersionInfo",
    "VersionNotFound",
    "create_tables",
    "default_url",
    "make_engine",
]
