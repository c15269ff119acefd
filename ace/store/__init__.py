"""Persistence of versioned playbooks on SQLAlchemy (SQLite by default, PostgreSQL at scale)."""

from ace.store.branches import BranchInfo, BranchRefused, MergeResult, NotABranch
from ace.store.channels import CANDIDATE, SERVING, ChannelInfo, ChannelMove, ChannelMoved, ChannelNotFound
from ace.store.errors import (
    ImportRefused,
    PlaybookExists,
    PlaybookNotFound,
    StaleVersionError,
    StoreError,
    StoreIntegrityError,
    VersionNotFound,
)
from ace.store.schema_version import HEAD as SCHEMA_REVISION
from ace.store.schema_version import SchemaOutdated, create_tables, upgrade
from ace.store.store import (
    DEFAULT_NAMESPACE,
    BlameEntry,
    PlaybookInfo,
    PlaybookStore,
    VersionInfo,
    default_url,
    import_problems,
    make_engine,
)

__all__ = [
    "CANDIDATE",
    "DEFAULT_NAMESPACE",
    "SCHEMA_REVISION",
    "SERVING",
    "BlameEntry",
    "BranchInfo",
    "BranchRefused",
    "ChannelInfo",
    "ChannelMove",
    "ChannelMoved",
    "ChannelNotFound",
    "ImportRefused",
    "MergeResult",
    "NotABranch",
    "PlaybookExists",
    "PlaybookInfo",
    "PlaybookNotFound",
    "PlaybookStore",
    "SchemaOutdated",
    "StaleVersionError",
    "StoreError",
    "StoreIntegrityError",
    "VersionInfo",
    "VersionNotFound",
    "create_tables",
    "default_url",
    "import_problems",
    "make_engine",
    "upgrade",
]
